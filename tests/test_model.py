"""ECMAModel in-process: losses, optimizer by name, non-finite loss handling, registry errors."""
import copy

import pytest
import torch
from basicsr.models import build_model
from basicsr.utils.registry import ARCH_REGISTRY
from helpers import tiny_sr_options


def model_opt(tmp_path):
    opt = tiny_sr_options('unit', 'unused', 'unused')
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(training_states=str(tmp_path / 'training_states'), models=str(tmp_path / 'models'))
    return opt


def test_optimize_step_uses_pixel_and_frequency_loss(tmp_path):
    torch.manual_seed(0)
    model = build_model(model_opt(tmp_path))
    assert type(model.optimizer_g).__name__ == 'AdamW'
    model.feed_data({'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32)})
    before = copy.deepcopy(model.net_g.state_dict())
    model.optimize_parameters(1)
    assert set(model.get_current_log()) == {'l_pix', 'l_freq'}
    assert any(not torch.equal(before[k], v) for k, v in model.net_g.state_dict().items())


def test_non_finite_loss_stops_before_the_step(tmp_path):
    model = build_model(model_opt(tmp_path))
    before = copy.deepcopy(model.net_g.state_dict())
    lq = torch.rand(1, 3, 16, 16)
    lq[0, 0, 0, 0] = float('nan')
    model.feed_data({'lq': lq, 'gt': torch.rand(1, 3, 32, 32)})
    with pytest.raises(FloatingPointError, match='non-finite loss at iteration 37'):
        model.optimize_parameters(37)
    assert all(torch.equal(before[k], v) for k, v in model.net_g.state_dict().items())


def test_unknown_optimizer_lists_choices(tmp_path):
    opt = model_opt(tmp_path)
    opt['train']['optim_g']['type'] = 'AdamX'
    with pytest.raises(ValueError, match=r"'AdamX' is not a torch.optim optimizer. Valid choices: .*AdamW"):
        build_model(opt)


def test_grad_clip_limits_the_update(tmp_path):
    opt = model_opt(tmp_path)
    opt['train']['grad_clip'] = 1e-6
    opt['train']['optim_g'] = dict(type='SGD', lr=1.0)
    model = build_model(opt)
    before = copy.deepcopy(model.net_g.state_dict())
    model.feed_data({'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32)})
    model.optimize_parameters(1)
    delta = sum((v - before[k]).square().sum() for k, v in model.net_g.state_dict().items()).sqrt()
    assert 0 < delta <= 1e-6 * 1.01


def test_registry_miss_lists_valid_choices(engine):
    with pytest.raises(KeyError, match="No arch named 'ECMAX'. Valid choices: .*ECMA, ECMASR"):
        ARCH_REGISTRY.get('ECMAX')
    engine.uninstall()
    with pytest.raises(KeyError) as plain:  # BasicSR's own message once the engine is removed
        ARCH_REGISTRY.get('ECMAX')
    assert 'Valid choices' not in str(plain.value)


def test_engine_gives_other_basicsr_models_the_mixin(tmp_path, engine):
    """model_type: SRModel through the engine's build_model: atomic checkpoints and RNG states too."""
    import basicsr.train
    from basicsr.models.sr_model import SRModel

    from ecma_basicsr.engine.model import EngineModelMixin
    from ecma_basicsr.models.ecma_model import ECMAModel
    opt = model_opt(tmp_path)
    opt['model_type'] = 'SRModel'
    opt['train'].pop('fft_opt')
    opt['train']['optim_g']['type'] = 'Adam'
    (tmp_path / 'training_states').mkdir()
    model = basicsr.train.build_model(opt)
    assert isinstance(model, SRModel) and isinstance(model, EngineModelMixin)
    assert type(model).__name__ == 'SRModel' and not issubclass(SRModel, EngineModelMixin)
    model.save_training_state(0, 3)
    state = torch.load(tmp_path / 'training_states' / '3.state', weights_only=True)
    assert len(state['rng']) == 1
    assert type(basicsr.train.build_model(model_opt(tmp_path))) is ECMAModel, 'ECMAModel has the mixin already'


def test_multi_output_network_trains_under_bf16(tmp_path):
    """IRNeXt returns [1/4, 1/2, full] in training; AMP casts every output for its loss."""
    opt = model_opt(tmp_path)
    opt['scale'] = 1
    opt['network_g'] = dict(type='IRNeXt', width=8, num_blocks=2, return_all_train=True)
    opt['train']['pixel_opt'] = dict(type='IRNeXtLoss')
    opt['train'].pop('fft_opt')
    opt['train']['use_amp'] = 'bf16'
    model = build_model(opt)
    model.feed_data({'lq': torch.rand(2, 3, 32, 32), 'gt': torch.rand(2, 3, 32, 32)})
    model.optimize_parameters(1)
    assert all(o.dtype == torch.float32 for o in model.output)
    assert torch.isfinite(torch.tensor(model.get_current_log()['l_pix']))


def test_channel_mismatch_names_the_image(tmp_path):
    model = build_model(model_opt(tmp_path))
    for channels in (1, 4):
        with pytest.raises(ValueError, match=rf'image photo\.png has {channels} channels but network_g takes in_ch=3'):
            model.feed_data({'lq': torch.rand(1, channels, 8, 8), 'lq_path': ['photo.png']})


def test_validation_runs_the_fused_copy_made_once_per_validation(tmp_path):
    from ecma_basicsr.archs.ecma_fuse import FusedCML
    model = build_model(model_opt(tmp_path))
    net = model.get_bare_model(model.net_g_ema if hasattr(model, 'net_g_ema') else model.net_g)
    with torch.no_grad():
        for p in net.parameters():  # zero-initialised gammas would hide the blocks
            p.add_(0.05 * torch.randn_like(p))
    model.feed_data({'lq': torch.rand(1, 3, 13, 11), 'gt': torch.rand(1, 3, 26, 22)})
    model.test()
    fused = model._inference_net[1]
    assert fused is not net and any(isinstance(m, FusedCML) for m in fused.modules())
    with torch.no_grad():
        ref = net.eval()(model.lq)
    assert (model.output - ref).abs().max() <= 1e-5
    model.test()
    assert model._inference_net[1] is fused  # reused within one validation


@pytest.mark.parametrize('network', [dict(type='NAFNet', width=8, enc_blk_nums=[1], middle_blk_num=1, dec_blk_nums=[1]),
                                     dict(type='IMDN', nf=8, num_modules=1, upscale=2),
                                     dict(type='GRL', embed_dim=8, depths=[1], num_heads_window=1, num_heads_stripe=1,
                                          window_size=4, stripe_size=[4, 8], upscale=2, upsampler='pixelshuffle'),
                                     dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2)],
                         ids=lambda n: n['type'])
def test_channel_check_names_each_networks_own_argument(tmp_path, network):
    from ecma_basicsr.archs.arch_util import image_channels
    opt = model_opt(tmp_path)
    opt['network_g'] = network
    opt['scale'] = network.get('upscale', 1)
    model = build_model(opt)
    channels, arg = image_channels(model.get_bare_model(model.net_g))
    assert channels == 3 and arg in ('img_channel', 'in_nc', 'in_channels', 'num_in_ch')
    with pytest.raises(ValueError, match=rf'image a\.png has 1 channels but network_g takes {arg}=3'):
        model.feed_data({'lq': torch.rand(1, 1, 8, 8), 'lq_path': ['a.png']})


def test_validation_results_are_appended_to_metrics_jsonl(tmp_path):
    from ecma_basicsr.engine.model import read_metric_history
    opt = model_opt(tmp_path)
    opt['path']['experiments_root'] = str(tmp_path)
    model = build_model(opt)
    for it, psnr in ((10, 20.5), (20, 21.25), (20, 21.5)):  # a resumed run repeats iteration 20: the later wins
        model.metric_results = {'psnr': psnr, 'ssim': 0.5}
        model._log_validation_metric_values(it, 'Val', None)
    assert read_metric_history(str(tmp_path)) == [
        {'iter': 10, 'dataset': 'Val', 'psnr': 20.5, 'ssim': 0.5},
        {'iter': 20, 'dataset': 'Val', 'psnr': 21.5, 'ssim': 0.5}]
    assert read_metric_history(str(tmp_path / 'absent')) == []
