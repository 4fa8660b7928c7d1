"""Benchmarks: measured speed ratios (ours vs a baseline, same inputs, same run), run on demand.

`python -m benchmarks [--quick] [--device cpu|cuda]` (or `make bench`) prints one line per figure,
`name: ratio (ours vs baseline) - detail`, and writes them to benchmarks/RESULTS.md
(RESULTS-gpu.md on CUDA). `python -m benchmarks.gpu_check` (`make gpu-check`) runs the CUDA path
end to end. Nothing here is a timed test: these machines are shared and noisy, so every figure
is a ratio of two timings taken back to back.
"""
