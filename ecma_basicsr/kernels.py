"""``basicsr kernels``: what ECMA adapts to, as in the paper's Fig. 5 (clusters of the dynamic kernels W-bar).

In a Local Adaptive Module (Sec. 3.1, Eq. 2) the local 3x3 depthwise kernel W is modulated per pixel by the
context branch: W-bar(p) = sigma(p) * W with sigma = W'(I') (``LAM.conv_ctx`` applied to the LAM's context),
so every pixel p has its own c/4 x 3 x 3 kernel. This command runs a trained ECMA (or ECMA-SR) on one image,
collects W-bar at every pixel of one chosen LAM (``--stage``, ``--block``, ``--lam``), clusters the kernels
with k-means (k-means++ initialisation, ``--seed``; centres fitted on a seeded sample of at most
``--sample`` pixels, then every pixel assigned), and writes one PNG: the input, the network's output and the
cluster labels as a colour map at image resolution, side by side.

    basicsr kernels ECMA-T@experiments/ECMA-T_GoPro/models/net_g_latest.pth --image blurry.png --k 6 \\
        --stage encoders.0 --block 0 --lam 1 --out fig5.png
"""
import argparse
import os.path as osp

from ecma_basicsr.errors import UserError

# Distinct colours for cluster labels (BGR); beyond these, hues are spread evenly.
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]


class KernelsError(UserError):
    """Bad ``basicsr kernels`` input; the message says the fix."""


def find_lam(net, stage, block, lam):
    """The LAM module at ``net.body.<stage>[block].cml.lams[lam - 1]`` with a clear error listing valid choices."""
    body = getattr(net, 'body', None)
    stages = [f'{name}.{i}' for name in ('encoders', 'decoders') for i in range(len(getattr(body, name, [])))]
    if not stages:
        raise KernelsError(f'{type(net).__name__} has no ECMA stages; basicsr kernels needs ECMA or ECMASR.')
    if stage not in stages:
        raise KernelsError(f"--stage '{stage}' is not a stage of this network; choose one of: {', '.join(stages)}.")
    name, index = stage.split('.')
    blocks = getattr(body, name)[int(index)]
    if not 0 <= block < len(blocks):
        raise KernelsError(f'--block {block}: {stage} has blocks 0..{len(blocks) - 1}.')
    lams = blocks[block].cml.lams
    if not 1 <= lam <= len(lams):
        raise KernelsError(f'--lam {lam}: each block has LAM 1..{len(lams)} (LAM 1 has the large kernel).')
    return lams[lam - 1]


def collect_wbar(net, x, lam_module):
    """``(output, W-bar features (H' x W' x q*9), stage size)``: W-bar(p) = sigma(p) * W at every pixel (Eq. 2)."""
    import torch

    captured = {}
    handle = lam_module.conv_ctx.register_forward_hook(lambda m, i, o: captured.__setitem__('sigma', o.detach()))
    try:
        with torch.inference_mode():
            out = net(x)
    finally:
        handle.remove()
    sigma = captured['sigma'][0]  # q x H' x W'
    w = lam_module.conv_w.weight.detach().reshape(sigma.shape[0], -1)  # q x 9 (depthwise 3x3, no bias)
    feats = (sigma.permute(1, 2, 0)[..., None] * w).reshape(*sigma.shape[1:], -1)
    return out, feats


def kmeans(points, k, seed=0, iters=50, sample=20000):
    """Labels of ``points`` (N x D float array) by k-means: k-means++ start, Lloyd iterations, all seeded."""
    import numpy as np
    rng = np.random.default_rng(seed)
    pts = points.astype(np.float64)
    fit = pts[rng.choice(len(pts), sample, replace=False)] if len(pts) > sample else pts
    centres = [fit[rng.integers(len(fit))]]
    d2 = ((fit - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        idx = rng.choice(len(fit), p=d2 / total) if total > 0 else rng.integers(len(fit))
        centres.append(fit[idx])
        d2 = np.minimum(d2, ((fit - fit[idx]) ** 2).sum(1))
    centres = np.stack(centres)

    def assign(data):
        dist = (data ** 2).sum(1)[:, None] - 2 * data @ centres.T + (centres ** 2).sum(1)[None]
        return dist.argmin(1)

    for _ in range(iters):
        labels = assign(fit)
        new = np.stack([fit[labels == j].mean(0) if np.any(labels == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    labels = np.concatenate([assign(pts[i:i + 65536]) for i in range(0, len(pts), 65536)])
    # order clusters by size (largest first) so colours do not depend on the centres' order
    order = np.argsort(-np.bincount(labels, minlength=k), kind='stable')
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return rank[labels]


def label_map(net, img, stage='encoders.0', block=0, lam=1, k=6, seed=0, sample=20000):
    """Cluster labels (H x W int array at the image's resolution) and the network's output for ``img``.

    Args:
        net (nn.Module): An unfused ECMA / ECMASR in eval mode.
        img (ndarray): H x W x C float32 image in [0, 1], BGR for colour.
    """
    import cv2
    import numpy as np
    import torch

    lam_module = find_lam(net, stage, block, lam)
    arr = img[..., ::-1] if img.shape[2] == 3 else img
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None].float()
    out, feats = collect_wbar(net, x, lam_module)
    h, w = img.shape[:2]
    m = net.body.multiple
    ratio = (h + (-h) % m) // feats.shape[0]  # 2**level of the chosen stage (the input is padded to m)
    sh, sw = -(-h // ratio), -(-w // ratio)
    feats = feats[:sh, :sw]  # drop the rows/columns that come from the padding
    labels = kmeans(feats.reshape(-1, feats.shape[-1]).cpu().numpy(), k, seed, sample=sample).reshape(sh, sw)
    labels = cv2.resize(labels.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    return labels, out


def colourise(labels, k):
    import colorsys

    import numpy as np
    colours = list(PALETTE)
    for j in range(len(colours), k):
        r, g, b = colorsys.hsv_to_rgb((j * 0.618) % 1, 0.65, 0.9)
        colours.append((int(b * 255), int(g * 255), int(r * 255)))
    return np.array(colours[:k], dtype=np.uint8)[labels]


def figure(img, out, labels, k, caption):
    """One BGR uint8 image: input | output | colour map, each at the output's size, with captions."""
    import cv2
    import numpy as np
    oh, ow = out.shape[:2]

    def panel(a, interp):
        a = cv2.resize(a, (ow, oh), interpolation=interp) if a.shape[:2] != (oh, ow) else a
        return a if a.ndim == 3 and a.shape[2] == 3 else cv2.cvtColor(a.reshape(oh, ow), cv2.COLOR_GRAY2BGR)

    to8 = lambda a: np.clip(np.round(a * 255), 0, 255).astype(np.uint8)  # noqa: E731
    panels = [panel(to8(img), cv2.INTER_CUBIC), panel(to8(out), cv2.INTER_NEAREST),
              panel(colourise(labels, k), cv2.INTER_NEAREST)]
    bar = max(18, oh // 20)
    titles = ['input', 'output', caption]
    tiled = []
    for p, title in zip(panels, titles):
        head = np.full((bar, ow, 3), 255, np.uint8)
        cv2.putText(head, title, (4, bar - 5), cv2.FONT_HERSHEY_SIMPLEX, bar / 40, (0, 0, 0), 1, cv2.LINE_AA)
        tiled.append(np.concatenate([head, p], axis=0))
    gap = np.full((oh + bar, 4, 3), 255, np.uint8)
    return np.concatenate([tiled[0], gap, tiled[1], gap, tiled[2]], axis=1)


def build_parser():
    parser = argparse.ArgumentParser(prog='basicsr kernels', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='network: PRESET, ARCH:key=value or OPTIONS.yml with @WEIGHTS '
                                            '(as in basicsr restore -h); an ECMA or ECMASR.')
    parser.add_argument('network', help='a trained ECMA, e.g. ECMA-T@net_g_latest.pth')
    parser.add_argument('--image', required=True, help='the image to analyse')
    parser.add_argument('--out', required=True, help='the PNG to write (input | output | cluster map)')
    parser.add_argument('--stage', default='encoders.0', help='encoders.N or decoders.N (default encoders.0)')
    parser.add_argument('--block', type=int, default=0, help='block of the stage, from 0 (default 0)')
    parser.add_argument('--lam', type=int, default=1, help='LAM of the block, 1 = large kernel (default 1)')
    parser.add_argument('--k', type=int, default=6, help='number of clusters (default 6)')
    parser.add_argument('--seed', type=int, default=0, help='k-means seed (default 0)')
    parser.add_argument('--sample', type=int, default=20000, help='pixels the centres are fitted on (default 20000)')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.k < 2:
        raise KernelsError(f'--k {args.k}: use at least 2 clusters.')
    if not args.out.lower().endswith('.png'):
        raise KernelsError(f"--out '{args.out}' should end with .png.")
    import os

    import cv2

    from ecma_basicsr.bench.networks import build, parse_spec
    from ecma_basicsr.restore import read_image

    spec = parse_spec(args.network)
    if not spec.checkpoint or not osp.isfile(spec.checkpoint):
        raise KernelsError(f"'{args.network}' needs trained weights: append @PATH to an existing .pth file.")
    net = build(spec, 'cpu')
    if type(net).__name__ not in ('ECMA', 'ECMASR'):
        raise KernelsError(f'{spec.label} is a {type(net).__name__}; basicsr kernels needs ECMA or ECMASR.')
    try:
        img, _, _ = read_image(args.image)
    except UserError as err:
        raise KernelsError(str(err)) from None
    if img.shape[2] != spec.in_ch:
        img = img.mean(2, keepdims=True) if spec.in_ch == 1 else img.repeat(3, axis=2)
    labels, out = label_map(net, img, args.stage, args.block, args.lam, args.k, args.seed, args.sample)
    out = out.clamp(0, 1)[0].cpu().numpy().transpose(1, 2, 0)
    out = out[..., ::-1] if out.shape[2] == 3 else out
    caption = f'W-bar clusters, k={args.k}, {args.stage} block {args.block} LAM {args.lam}'
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, figure(img, out, labels, args.k, caption))
    counts = ', '.join(f'{(labels == j).mean() * 100:.1f}%' for j in range(args.k))
    print(f'wrote {args.out}: {labels.shape[0]}x{labels.shape[1]} label map, cluster shares {counts}')
    return 0
