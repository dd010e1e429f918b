"""The benchmark harness behind ``basicsr bench``: one run compares networks on this machine.

For every network it measures parameters, MACs (mmengine, FFT work counted separately; see
:mod:`ecma_basicsr.analysis.flops`), latency (warm-up, then median and spread of timed runs under
``torch.inference_mode`` at a fixed thread count), peak memory, the achieved MAC/s as a fraction
of the machine's float32 GEMM throughput measured in the same run, and PSNR/SSIM on test sets
when weights are given, next to the bicubic / identity floors. It writes ``results.csv``,
``results.md``, the PSNR-vs-MACs and latency-vs-MACs plots and ``provenance.json``.

Modules:

* :mod:`.networks`: presets (``ECMA-T``, ``NAFNet-GoPro-width32``, ``SwinIR-light-x4``, ...), the network
  spec grammar, building and checkpoint loading;
* :mod:`.testsets`: test-set specs and their protocols (sr / deblur / denoise / awgn), metrics;
* :mod:`.measure`: GEMM probe, latency, peak memory;
* :mod:`.worker`: the subprocess that measures one network (so an OOM or a hang costs that row
  only, and peak memory is per process);
* :mod:`.runner`: schedules workers under a time budget and collects the rows;
* :mod:`.report`: CSV, Markdown, plots, provenance;
* :mod:`.cli`: the ``basicsr bench`` command line.
"""
from ecma_basicsr.errors import UserError


class BenchError(UserError, ValueError):
    """Bad bench input (unknown network, missing file, malformed spec); the message says the fix.

    A :class:`~ecma_basicsr.errors.UserError`, so the ``basicsr`` command prints it as one line and exits 1.
    """
