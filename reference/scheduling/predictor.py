"""Length re-prediction at the perceptible moment (LAPS-SD, arXiv 2505.17074, Alg. 1 line 13).

When a request becomes perceptible, Algorithm 1 predicts its output length and acceptance rate again, now that
part of the output exists; the paper reports a 6.84% overall error of the resulting execution-time estimate. We
have no prefix-aware length model, so the re-prediction is an error model of one, like the arrival-time
predictor of workload.py (true length x exp(sigma z)):

    remaining_hat = (L - n) * exp(sigma * (1 - n / L) * z_late)

with L the true output length, n the tokens generated so far, z_late ~ N(0, 1) drawn once per request
(`Request.late_z`, independent of the arrival predictor's draw) and `sigma` the late predictor's error at the
start of decoding: its spread shrinks linearly with the generated fraction, to 0 at the last token (a model that
reads the prefix knows more the more it has read). sigma = 0.1 gives a median |error| of 6.7%
(|exp(0.1 z) - 1| at |z| = 0.674), close to the paper's 6.84%; `late_error` is a parameter of every policy that
re-predicts, so the board can show what a worse predictor costs.

This is the only place besides the SRPT oracle where a policy's input derives from `request.output_len`: it is
the predictor's error model, not the policy reading the future.
"""
from __future__ import annotations

import math


def check_late_error(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 <= sigma < math.inf:
        raise ValueError(f"late_error must be a finite number >= 0, got {sigma!r}")
    return float(sigma)


def repredict_remaining(request, generated: int, sigma: float) -> float:
    """Predicted tokens still to generate after `generated` (module docstring); 0 once the request is done."""
    left = request.output_len - generated
    if left <= 0:
        return 0.0
    spread = sigma * (1.0 - generated / request.output_len)
    return left * math.exp(spread * request.late_z)
