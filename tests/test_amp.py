"""Mixed precision (``train: use_amp``) and ``train: compile`` in ECMAModel, on CPU.

The inductor compile test takes minutes on a busy CPU; it runs only with ``ECMA_SLOW_TESTS=1``.
"""
import copy
import os

import pytest
import torch
from basicsr.models import build_model
from helpers import tiny_sr_options


def model_opt(tmp_path, **train):
    opt = tiny_sr_options('amp', 'unused', 'unused')
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(training_states=str(tmp_path), models=str(tmp_path))
    opt['train'].update(train)
    return opt


def batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {'lq': torch.rand(2, 3, 16, 16, generator=gen), 'gt': torch.rand(2, 3, 32, 32, generator=gen)}


def test_bf16_runs_the_network_in_bf16_and_the_ffts_in_float32(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = build_model(model_opt(tmp_path, use_amp='bf16'))
    fft_inputs, conv_outputs = [], []
    rfft2 = torch.fft.rfft2
    monkeypatch.setattr(torch.fft, 'rfft2', lambda x, *a, **k: fft_inputs.append(x.dtype) or rfft2(x, *a, **k))
    model.get_bare_model(model.net_g).head.register_forward_hook(lambda m, i, o: conv_outputs.append(o.dtype))
    before = copy.deepcopy(model.net_g.state_dict())
    for it in range(1, 4):
        model.feed_data(batch(it))
        model.optimize_parameters(it)
        log = model.get_current_log()
        assert all(torch.isfinite(torch.tensor(v)) for v in log.values()), log
    assert set(conv_outputs) == {torch.bfloat16}, 'autocast should run the convolutions in bf16'
    assert fft_inputs and set(fft_inputs) == {torch.float32}, 'the large-kernel FFTs must stay in float32'
    assert model.output.dtype == torch.float32 and model.grad_scaler is None
    assert all(v.dtype == torch.float32 for v in model.net_g.state_dict().values() if v.is_floating_point()), \
        'master weights stay fp32'
    assert any(not torch.equal(before[k], v) for k, v in model.net_g.state_dict().items())


def test_fp16_uses_a_grad_scaler_that_skips_overflowing_steps(tmp_path):
    torch.manual_seed(0)
    model = build_model(model_opt(tmp_path, use_amp='fp16'))
    assert isinstance(model.grad_scaler, torch.amp.GradScaler)
    model.grad_scaler = torch.amp.GradScaler('cpu', init_scale=2.0**120)  # scaled fp32 grads overflow
    before = copy.deepcopy(model.net_g.state_dict())
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert all(torch.equal(before[k], v) for k, v in model.net_g.state_dict().items()), 'overflow: step skipped'
    assert model.grad_scaler.get_scale() == 2.0**119
    model.grad_scaler = torch.amp.GradScaler('cpu', init_scale=2.0**10)
    model.optimize_parameters(2)
    assert any(not torch.equal(before[k], v) for k, v in model.net_g.state_dict().items())


def test_grad_scaler_state_is_saved_and_resumed(tmp_path):
    model = build_model(model_opt(tmp_path, use_amp='fp16'))
    model.grad_scaler = torch.amp.GradScaler('cpu', init_scale=1234.0)
    model.feed_data(batch())
    model.optimize_parameters(1)
    model.save_training_state(0, 1)
    state = torch.load(tmp_path / '1.state', weights_only=True)
    assert state['grad_scaler']['scale'] == 1234.0 and len(state['rng']) == 1
    resumed = build_model(model_opt(tmp_path, use_amp='fp16'))
    resumed.resume_training(state)
    assert resumed.grad_scaler.get_scale() == 1234.0


@pytest.mark.parametrize('value, message', [
    ('fp32x', "train:use_amp must be bf16, fp16 or false, got 'fp32x'"),
    (True, 'train:use_amp must be bf16, fp16 or false, got True'),
])
def test_bad_use_amp_is_named(tmp_path, value, message):
    with pytest.raises(ValueError, match=message):
        build_model(model_opt(tmp_path, use_amp=value))


def test_compile_option_compiles_in_place_and_keeps_checkpoint_keys(tmp_path):
    plain = build_model(model_opt(tmp_path))
    model = build_model(model_opt(tmp_path, compile={'backend': 'eager'}))
    net = model.get_bare_model(model.net_g)
    assert getattr(net, '_compiled_call_impl', None) is not None, 'train:compile should compile the network'
    assert type(net).__name__ == 'ECMASR' and list(net.state_dict()) == list(plain.net_g.state_dict())
    model.feed_data({'lq': torch.rand(1, 3, 20, 12)})  # validation sizes vary: run eagerly, no recompiles
    model.test()
    assert model.output.shape == (1, 3, 40, 24) and net.training
    with pytest.raises(ValueError, match='train:compile must be true, false or a dict with keys mode, backend'):
        build_model(model_opt(tmp_path, compile={'modee': 'max-autotune'}))


def test_compile_traces_the_network_whole_around_the_ffts(tmp_path):
    """'auto' kernels are frozen at the training size (else every layer's timing splits the graph),
    and the FFT path (complex rfft2/irfft2) traces into one graph."""
    from basicsr.archs import build_network

    from ecma_basicsr.archs.fft_conv import LargeKernelConv
    opt = model_opt(tmp_path)
    model = build_model(opt)
    x = torch.rand(2, 3, 16, 16)
    for mode in ('auto', 'fft'):
        net = build_network(dict(opt['network_g'], large_kernel_mode=mode))
        layers = [m for m in net.modules() if isinstance(m, LargeKernelConv)]
        counts = model.freeze_kernel_modes(net)
        assert sum(counts.values()) == (len(layers) if mode == 'auto' else 0)
        assert {m.mode for m in layers} <= {'fft', 'spatial'}
        torch._dynamo.reset()
        explained = torch._dynamo.explain(net)(x)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons[:2]


def test_deterministic_option_turns_cudnn_autotuning_off(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', True)
    monkeypatch.setattr(torch.backends.cudnn, 'deterministic', False)
    build_model(model_opt(tmp_path))
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    build_model(model_opt(tmp_path, deterministic=True))
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic


@pytest.mark.skipif(os.environ.get('ECMA_SLOW_TESTS') != '1', reason='inductor compile takes minutes on CPU; '
                    'set ECMA_SLOW_TESTS=1 to run it')
def test_inductor_compiled_training_matches_eager(tmp_path):
    torch.manual_seed(0)
    eager = build_model(model_opt(tmp_path))
    compiled = build_model(model_opt(tmp_path, compile=True))
    compiled.net_g.load_state_dict(eager.net_g.state_dict())
    for it in (1, 2):
        for model in (eager, compiled):
            model.feed_data(batch(it))
            model.optimize_parameters(it)
        assert abs(eager.get_current_log()['l_pix'] - compiled.get_current_log()['l_pix']) < 1e-4
    diff = max((v - compiled.net_g.state_dict()[k]).abs().max().item() for k, v in eager.net_g.state_dict().items())
    assert diff < 1e-4
