"""The kernels family: the conformance rule and a submitted kernel's report (`python -m harness conform`), mutation
testing of conformance (`python -m harness mutate`), the GPU benchmark against the copy-bandwidth roofline
(`python -m harness bench --suite kernels`) with its timing helpers, and the kernels boards and headline."""
