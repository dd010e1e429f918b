"""Evaluate one trained race contender on test sets; run by :mod:`.run` as a subprocess per contender.

``python -m ecma_basicsr.race.evaluate --network JSON --weights net_g_latest.pth --scale S
--testset NAME=TASK:PATH ... --out scores.json`` builds ``network_g``, loads the weights and scores
it with the bench harness's protocols (:func:`ecma_basicsr.bench.testsets.evaluate`: RGB PSNR/SSIM
with per-image seeded noise for ``awgn<sigma>``, Y channel with ``crop_border = scale`` for ``sr``).
"""
import argparse
import json
import time


def evaluate_network(network, weights, scale, testsets, limit=None):
    """``{set name: {'psnr', 'ssim', 'images', 'seconds'}}`` of ``network`` with ``weights`` loaded."""
    import torch

    from ecma_basicsr.bench.networks import NetSpec, build
    from ecma_basicsr.bench.testsets import evaluate, parse_testset

    network = dict(network)
    # the bench's own build: weights loaded strictly, SwinIR padded to its window as in the model's test()
    net = build(NetSpec(label=network.get('type'), arch=network.pop('type'), kwargs=network, scale=scale,
                        checkpoint=weights, param_key='params'))
    channels = 3
    scores = {}
    with torch.inference_mode():
        for text in testsets:
            ts = parse_testset(text, limit=limit)
            start = time.perf_counter()
            psnr, ssim, n, _ = evaluate(net, ts, scale, channels)
            scores[ts.name] = dict(psnr=psnr, ssim=ssim, images=n, seconds=time.perf_counter() - start)
    return scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--network', required=True, help='network_g as JSON')
    parser.add_argument('--weights', required=True)
    parser.add_argument('--scale', type=int, default=1)
    parser.add_argument('--testset', action='append', required=True, help='NAME=TASK:PATH (bench grammar)')
    parser.add_argument('--limit', type=int, default=None, help='images per set (default: all)')
    parser.add_argument('--out', required=True, help='JSON file to write')
    args = parser.parse_args(argv)
    import ecma_basicsr
    ecma_basicsr.register()
    scores = evaluate_network(json.loads(args.network), args.weights, args.scale, args.testset, args.limit)
    with open(args.out, 'w') as f:
        json.dump(scores, f, indent=1)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
