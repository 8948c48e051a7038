"""The diffusion-LLM family: the decoding methods and synthetic tasks, the accuracy suite (run), training the small
dLLM (train), the GPU throughput benchmark (bench), and the dLLM board, headline and Pareto rows."""
