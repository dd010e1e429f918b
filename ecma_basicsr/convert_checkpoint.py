"""Convert the authors' EDSR / RCAN checkpoints (EDSR-PyTorch key names) to BasicSR's EDSR / RCAN names.

ECMA's Table 5 compares with EDSR-baseline (and we add RCAN beside it); both are in basicsr 1.4.2, but the
authors released their weights from the EDSR-PyTorch code base (``EDSR_baseline_x4-6b446fab.pt``,
``RCAN_BIX4.pt``), whose module names differ from BasicSR's. The renaming (facts from the authors'
``model/edsr.py`` / ``model/rcan.py`` and BasicSR's ``edsr_arch.py`` / ``rcan_arch.py``):

=====================================================  ==================================================
EDSR-PyTorch                                           BasicSR
=====================================================  ==================================================
``head.0``                                             ``conv_first``
EDSR ``body.{i}.body.{0,2}``                           ``body.{i}.conv1``, ``body.{i}.conv2``
RCAN ``body.{g}.body.{b}.body.{0,2}``                  ``body.{g}.residual_group.{b}.rcab.{0,2}``
RCAN ``body.{g}.body.{b}.body.3.conv_du.{0,2}``        ``body.{g}.residual_group.{b}.rcab.3.attention.{1,3}``
RCAN ``body.{g}.body.{n_blocks}`` (group's last conv)  ``body.{g}.conv``
``body.{n}`` (the body's last conv)                    ``conv_after_body``
``tail.0.{k}`` (upsampler convs)                       ``upsample.{k}``
``tail.1``                                             ``conv_last``
``sub_mean``, ``add_mean`` (fixed mean shifts)         dropped: BasicSR's ``rgb_mean`` / ``img_range`` do it
=====================================================  ==================================================

The mean the checkpoint was trained with is read from ``sub_mean`` and checked against BasicSR's default
(DIV2K's), so a model trained with another mean is not silently shifted. Output: ``{'params': state_dict}``,
what ``param_key_g: params`` loads.

    python -m ecma_basicsr.convert_checkpoint rcan RCAN_BIX4.pt pretrained/RCAN_BIX4.pth
    python -m ecma_basicsr.convert_checkpoint edsr EDSR_baseline_x4-6b446fab.pt \\
        pretrained/EDSR_Mx4_f64b16_DIV2K_official-0c287733.pth
"""
import argparse
import re
import sys

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)  # BasicSR's EDSR / RCAN default rgb_mean
_W = r'(weight|bias)'
_COMMON = [(rf'head\.0\.{_W}', r'conv_first.\1'), (rf'tail\.0\.(\d+)\.{_W}', r'upsample.\1.\2'),
           (rf'tail\.1\.{_W}', r'conv_last.\1')]
_RULES = {
    'edsr': _COMMON + [(rf'body\.(\d+)\.body\.0\.{_W}', r'body.\1.conv1.\2'),
                       (rf'body\.(\d+)\.body\.2\.{_W}', r'body.\1.conv2.\2')],
    'rcan': _COMMON + [(rf'body\.(\d+)\.body\.(\d+)\.body\.([02])\.{_W}', r'body.\1.residual_group.\2.rcab.\3.\4'),
                       (rf'body\.(\d+)\.body\.(\d+)\.body\.3\.conv_du\.0\.{_W}',
                        r'body.\1.residual_group.\2.rcab.3.attention.1.\3'),
                       (rf'body\.(\d+)\.body\.(\d+)\.body\.3\.conv_du\.2\.{_W}',
                        r'body.\1.residual_group.\2.rcab.3.attention.3.\3')],
}


class ConversionError(ValueError):
    """The checkpoint is not an EDSR-PyTorch EDSR / RCAN state dict this converter understands."""


def _body_tail_conv(keys, arch):
    """Index of the body's closing conv: the one ``body.{n}`` that holds weights, not sub-blocks."""
    tails = {int(m.group(1)) for k in keys if (m := re.fullmatch(r'body\.(\d+)\.(weight|bias)', k))}
    blocks = {int(m.group(1)) for k in keys if (m := re.match(r'body\.(\d+)\.body\.', k))}
    if len(tails) != 1 or (blocks and max(blocks) >= min(tails)):
        raise ConversionError(f'cannot find the closing conv of the body (one body.N.weight after the blocks '
                              f'expected, found {sorted(tails)}); is this an EDSR-PyTorch {arch.upper()} checkpoint?')
    return tails.pop()


def _group_tail_convs(keys):
    """RCAN: per group, the index of its closing conv (``body.{g}.body.{n_blocks}.weight``)."""
    pattern = re.compile(r'body\.(\d+)\.body\.(\d+)\.(weight|bias)$')
    return {int(m.group(1)): int(m.group(2)) for k in keys if (m := pattern.match(k))}


def checkpoint_mean(state, rgb_range=255.):
    """The RGB mean the network subtracts (from ``sub_mean.bias`` = -rgb_range * mean / std, std 1)."""
    bias = state.get('sub_mean.bias')
    return None if bias is None else tuple(float(-b / rgb_range) for b in bias)


def convert(state, arch, check_mean=True):
    """EDSR-PyTorch state dict -> BasicSR state dict for ``arch`` ('edsr' or 'rcan').

    Raises:
        ConversionError: a key that has no BasicSR counterpart, or a mean other than DIV2K's.
    """
    if arch not in _RULES:
        raise ConversionError(f"unknown arch '{arch}'; choose one of: {', '.join(_RULES)}")
    state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
    mean = checkpoint_mean(state)
    if check_mean and mean is not None and max(abs(a - b) for a, b in zip(mean, DIV2K_MEAN)) > 1e-3:
        raise ConversionError(f'the checkpoint subtracts the RGB mean {tuple(round(m, 4) for m in mean)}, not '
                              f"DIV2K's {DIV2K_MEAN}; set network_g:rgb_mean to it in the option file and convert "
                              'with --any-mean.')
    return _rename(state, arch)


def _rename(state, arch):
    keys = list(state)
    rules = list(_RULES[arch])
    tail = _body_tail_conv(keys, arch)
    rules.append((rf'body\.{tail}\.{_W}', r'conv_after_body.\1'))
    if arch == 'rcan':
        for g, n in _group_tail_convs(keys).items():
            rules.append((rf'body\.{g}\.body\.{n}\.{_W}', rf'body.{g}.conv.\1'))
    out, unknown = {}, []
    for key, value in state.items():
        if key.startswith(('sub_mean.', 'add_mean.')):
            continue
        for pattern, target in rules:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, target, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"{len(unknown)} key(s) have no BasicSR {arch.upper()} counterpart, e.g. "
                              f"{', '.join(unknown[:5])}; is this the authors' {arch.upper()} checkpoint?")
    return out


def main(argv=None):
    import torch
    p = argparse.ArgumentParser(prog='python -m ecma_basicsr.convert_checkpoint',
                                description="Convert the authors' EDSR / RCAN checkpoint to BasicSR key names.")
    p.add_argument('arch', choices=sorted(_RULES))
    p.add_argument('src', help="the authors' .pt file")
    p.add_argument('dst', help="output .pth ({'params': ...}, for param_key_g: params)")
    p.add_argument('--any-mean', action='store_true', help='accept a checkpoint trained with another RGB mean')
    args = p.parse_args(argv)
    state = torch.load(args.src, map_location='cpu', weights_only=True)
    if isinstance(state, dict) and 'state_dict' in state and isinstance(state['state_dict'], dict):
        state = state['state_dict']
    try:
        out = convert(state, args.arch, check_mean=not args.any_mean)
    except ConversionError as err:
        print(f'convert_checkpoint: error: {err}', file=sys.stderr)
        return 1
    import os
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    torch.save({'params': out}, args.dst)
    print(f'wrote {args.dst}: {len(out)} tensors, BasicSR {args.arch.upper()} names')
    return 0


if __name__ == '__main__':
    sys.exit(main())
