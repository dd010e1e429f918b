"""Table 5's toolbox baselines (basicsr 1.4.2's EDSR, SwinIR, RCAN): option files, published checkpoints.

Option files: every dataset builds on the sample layouts and every network with its option file's arguments.
Checkpoints: SwinIR's release keeps the authors' key names, which BasicSR's SwinIR has (checked on the golden
fixture made with the authors' code); the authors' EDSR / RCAN files use EDSR-PyTorch names that
``ecma_basicsr.convert_checkpoint`` renames (checked against a forward pass written from the authors' model
structure, independent of BasicSR's classes).
"""
import glob
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
import yaml
from basicsr.archs import build_network

from ecma_basicsr import convert_checkpoint as cc

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FILES = sorted(glob.glob(osp.join(REPO, 'options', 'table5_sr_x4', '*.yml')))
BASELINES = [f for f in FILES if osp.basename(f).startswith(('EDSR', 'SwinIR', 'RCAN'))]
CHECKPOINTS = {'EDSR-baseline_x4_test.yml': 'pretrained/EDSR_Mx4_f64b16_DIV2K_official-0c287733.pth',
               'SwinIR-light_x4_test.yml': 'pretrained/002_lightweightSR_DIV2K_s64w8_SwinIR-S_x4.pth',
               'RCAN_x4_test.yml': 'pretrained/RCAN_BIX4.pth'}
PARAMS = {'EDSR': 1_517_571, 'SwinIR': 929_628, 'RCAN': 15_592_355}


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def test_there_is_a_train_and_a_test_file_per_baseline():
    names = sorted(osp.basename(f) for f in BASELINES)
    assert names == ['EDSR-baseline_x4_test.yml', 'EDSR-baseline_x4_train.yml', 'RCAN_x4_test.yml',
                     'RCAN_x4_train.yml', 'SwinIR-light_x4_test.yml', 'SwinIR-light_x4_train.yml']


@pytest.mark.parametrize('path', BASELINES, ids=[osp.basename(f) for f in BASELINES])
def test_network_and_protocol(path):
    opt = load(path)
    net = build_network(dict(opt['network_g']))  # on the CPU: basicsr's SwinIR cannot be built on 'meta' (.item())
    assert sum(p.numel() for p in net.parameters()) == PARAMS[opt['network_g']['type']]
    assert opt['scale'] == 4 and opt['network_g']['upscale'] == 4
    for metric in opt['val']['metrics'].values():  # the SR protocol: Y channel, border = scale
        assert metric['crop_border'] == 4 and metric['test_y_channel'] is True
    if path.endswith('_test.yml'):
        assert [d['name'] for d in opt['datasets'].values()] == ['Set5', 'Set14', 'B100', 'Urban100', 'Manga109']
        assert opt['path']['pretrain_network_g'] == CHECKPOINTS[osp.basename(path)]
        assert opt['path']['param_key_g'] == 'params'
    else:
        train = opt['datasets']['train']
        assert train['io_backend']['type'] == 'lmdb' and train['gt_size'] in (192, 256)


def test_checkpoint_names_are_documented():
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    for name in CHECKPOINTS.values():
        assert osp.basename(name) in readme


@pytest.fixture(scope='module')
def sr_samples(tmp_path_factory):
    from datasets_prep.sample import make_sample
    root = tmp_path_factory.mktemp('sr_samples')
    make_sample('sr', str(root / 'datasets' / 'DIV2K'), like='div2k', max_side=300, crop=96, step=96)
    for name in ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109'):
        make_sample('sr', str(root / 'datasets' / 'SR_benchmark' / name), like=name.lower(), max_side=96)
    return root


@pytest.mark.parametrize('path', BASELINES, ids=[osp.basename(f) for f in BASELINES])
def test_datasets_build_on_the_sample_layout(path, sr_samples, monkeypatch):
    from basicsr.data import build_dataset
    monkeypatch.chdir(sr_samples)
    opt = load(path)
    for phase, dopt in opt['datasets'].items():
        dopt = dict(dopt, phase='train' if phase == 'train' else 'val', scale=opt['scale'])
        if phase == 'train':
            dopt['gt_size'] = 64  # the sample's 96-pixel sub-images are smaller than the real 192 / 256 crops
        dataset = build_dataset(dopt)
        assert len(dataset) > 0
        item = dataset[0]
        assert item['gt'].shape[-1] == item['lq'].shape[-1] * 4


def test_swinir_accepts_the_authors_key_names(shared):
    """The authors' SwinIR state dict loads strictly into basicsr's SwinIR and gives their outputs."""
    d = torch.load(shared('golden', 'swinir_light_x4.pt'), weights_only=True)
    net = build_network(dict(d['config'], type='SwinIR')).eval()
    net.load_state_dict(d['state_dict'], strict=True)
    with torch.no_grad():  # first input: the constructor's img_size (stored masks); reflect-pad the other to 8
        for x, ref in zip(d['inputs'], d['outputs']):
            h, w = x.shape[-2:]
            xp = F.pad(x, (0, -w % 8, 0, -h % 8), mode='reflect')
            assert (net(xp)[..., :h * 4, :w * 4] - ref).abs().max() <= 1e-5


# --- the authors' EDSR / RCAN layouts (EDSR-PyTorch), written from model/edsr.py and model/rcan.py ---------------
def conv_shapes(cin, cout, k=3):
    return {'weight': (cout, cin, k, k), 'bias': (cout,)}


def authors_layout(arch, feat=16, blocks=2, groups=2, reduction=4, scale=4):
    """{key: shape} of an EDSR-PyTorch checkpoint (tiny sizes)."""
    layout = {'sub_mean': conv_shapes(3, 3, 1), 'add_mean': conv_shapes(3, 3, 1), 'head.0': conv_shapes(3, feat)}
    if arch == 'edsr':
        for i in range(blocks):
            layout.update({f'body.{i}.body.0': conv_shapes(feat, feat), f'body.{i}.body.2': conv_shapes(feat, feat)})
        layout[f'body.{blocks}'] = conv_shapes(feat, feat)
    else:
        for g in range(groups):
            for b in range(blocks):
                p = f'body.{g}.body.{b}.body.'
                layout.update({p + '0': conv_shapes(feat, feat), p + '2': conv_shapes(feat, feat),
                               p + '3.conv_du.0': conv_shapes(feat, feat // reduction, 1),
                               p + '3.conv_du.2': conv_shapes(feat // reduction, feat, 1)})
            layout[f'body.{g}.body.{blocks}'] = conv_shapes(feat, feat)
        layout[f'body.{groups}'] = conv_shapes(feat, feat)
    for k in range(0, 2 * (scale // 2), 2):  # x2 / x4: one conv + pixel shuffle per factor 2
        layout[f'tail.0.{k}'] = conv_shapes(feat, 4 * feat)
    layout['tail.1'] = conv_shapes(feat, 3)
    return {f'{m}.{p}': s for m, ps in layout.items() for p, s in ps.items()}


def authors_state(arch, mean=cc.DIV2K_MEAN, seed=0, **sizes):
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(s, generator=g) * 0.05 for k, s in authors_layout(arch, **sizes).items()}
    eye = torch.eye(3).view(3, 3, 1, 1)
    state.update({'sub_mean.weight': eye, 'sub_mean.bias': -255 * torch.tensor(mean),
                  'add_mean.weight': eye, 'add_mean.bias': 255 * torch.tensor(mean)})
    return state


def authors_forward(state, x, arch, blocks=2, groups=2, scale=4):
    """The authors' forward (inputs in [0, 1], their rgb_range 255), from their model files."""
    def conv(t, name):
        w = state[name + '.weight']
        return F.conv2d(t, w, state[name + '.bias'], padding=w.shape[-1] // 2)

    head = conv(conv(x * 255, 'sub_mean'), 'head.0')
    res = head
    for g in range(groups if arch == 'rcan' else 1):
        start = res
        for b in range(blocks):
            p = f'body.{g}.body.{b}.body.' if arch == 'rcan' else f'body.{b}.body.'
            y = conv(F.relu(conv(res, p + '0')), p + '2')
            if arch == 'rcan':  # channel attention
                y = y * torch.sigmoid(conv(F.relu(conv(y.mean((2, 3), keepdim=True), p + '3.conv_du.0')),
                                           p + '3.conv_du.2'))
            res = res + y
        if arch == 'rcan':
            res = conv(res, f'body.{g}.body.{blocks}') + start
    res = conv(res, f'body.{groups if arch == "rcan" else blocks}') + head
    for k in range(0, 2 * (scale // 2), 2):
        res = F.pixel_shuffle(conv(res, f'tail.0.{k}'), 2)
    return conv(conv(res, 'tail.1'), 'add_mean') / 255


@pytest.mark.parametrize('arch,scale', [('edsr', 4), ('rcan', 4), ('rcan', 2)])
def test_converted_authors_checkpoint_gives_the_authors_output(arch, scale):
    state = authors_state(arch, scale=scale)
    converted = cc.convert(state, arch)
    kwargs = dict(num_in_ch=3, num_out_ch=3, num_feat=16, num_block=2, upscale=scale, res_scale=1)
    net = build_network(dict(kwargs, type='EDSR') if arch == 'edsr' else
                        dict(kwargs, type='RCAN', num_group=2, squeeze_factor=4)).eval()
    net.load_state_dict(converted, strict=True)
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (net(x) - authors_forward(state, x, arch, scale=scale)).abs().max() < 1e-4


def test_converter_refuses_what_it_cannot_map(tmp_path):
    with pytest.raises(cc.ConversionError, match=r'subtracts the RGB mean \(0\.469, 0\.449, 0\.4036\)'):
        cc.convert(authors_state('rcan', mean=(0.4690, 0.4490, 0.4036)), 'rcan')
    assert cc.convert(authors_state('rcan', mean=(0.4690, 0.4490, 0.4036)), 'rcan', check_mean=False)
    with pytest.raises(cc.ConversionError, match=r'no BasicSR EDSR counterpart, e\.g\. body\.0\.body\.0\.body\.0\.w'):
        cc.convert(authors_state('rcan'), 'edsr')  # an RCAN file converted as EDSR
    src, dst = tmp_path / 'RCAN_BIX4.pt', tmp_path / 'out' / 'RCAN_BIX4.pth'
    torch.save(authors_state('rcan'), src)
    assert cc.main(['rcan', str(src), str(dst)]) == 0
    assert set(torch.load(dst, weights_only=True)) == {'params'}
    assert cc.main(['edsr', str(src), str(dst)]) == 1
