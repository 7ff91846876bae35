"""``python -m model.finetune``: flags -> :class:`FinetuneSettings` -> :func:`model.finetune.run.finetune`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from model.errors import RecognizerError
from model.finetune.settings import PRECISIONS, FinetuneSettings, Freeze

PROG = "python -m model.finetune"
EPILOG = """examples:
  python -m model.finetune --data clips/ --base scratch:tiny --out my-model --span-s 2
  python -m model.finetune --data clips.csv --base facebook/timesformer-base-finetuned-k400 \\
      --freeze last:2 --out my-model --epochs 5
data: a folder with train/<label>/*.mp4 and val/<label>/*.mp4 (optional labels.txt: the class order;
symmetries.json: how labels change under hflip, vflip, transpose, reverse), or a CSV of
path,label[,start_s,end_s] rows."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Fine-tune a TimeSformer on labeled video clips.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder (train/<label>/, val/<label>/) or CSV")
    p.add_argument("--base", default="scratch:tiny",
                   help="where to start: scratch:tiny|small|small-wide|base (new network), a HF folder, hub id, .pyth/.pth, "
                        "or a built-in name such as motion-demo (default scratch:tiny)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write (Hugging Face layout)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training windows (default 10)")
    p.add_argument("--batch", type=int, default=16, help="clips per step (default 16)")
    p.add_argument("--lr", type=float, help="peak learning rate (AdamW, cosine); default 1e-3 from scratch, "
                                            "1e-4 from a checkpoint")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default 0.05)")
    p.add_argument("--warmup", type=float, default=0.05, help="share of steps spent warming up (default 0.05)")
    p.add_argument("--label-smoothing", type=float, default=0.05, help="cross-entropy smoothing (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the init, window order and augmentation")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32, or bf16 autocast")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default); results are "
                                                          "reproducible for the same count")
    p.add_argument("--freeze", help="backbone (train the head only) or last:K (the last K blocks and the head)")
    p.add_argument("--prior", help="a fixed front end for a scratch network: motion-demo (on scratch:small) or "
                   "motion-demo-regions (on scratch:small-wide; model/demo/prior.py)")
    p.add_argument("--frames", type=int, help="frames per clip (default: the base's)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--span-s", type=float, help="clip duration in seconds (frames span_s/frames apart)")
    group.add_argument("--stride", type=int, help="frames between samples")
    p.add_argument("--windows-per-video", type=int, default=4,
                   help="windows taken from each clip, spread over it (default 4)")
    p.add_argument("--reverse-pairs", action="store_true",
                   help="each step holds batch/2 windows and the same windows played backwards (their labels "
                        "reversed): needs a reverse map in the symmetries; teaches direction sooner")
    p.add_argument("--val", type=Path, help="validation CSV for a CSV --data (default: hold out --val-share)")
    p.add_argument("--val-share", type=float, default=0.1, help="share of a CSV held out for validation")
    p.add_argument("--symmetries", type=Path, help="label maps for flips and reversal (default DATA/symmetries.json)")
    p.add_argument("--domain", help="what the data shows, written to config.json (e.g. synthetic-shapes)")
    p.add_argument("--license", help="licence of the weights, written to the model card (README.md)")
    p.add_argument("--cache", type=Path, help="where decoded windows are kept (default ~/.cache/timesformer-stream)")
    p.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    p.add_argument("--resume", action="store_true", help="continue from the last finished epoch saved under --out")
    p.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="start no epoch that would end past this many minutes (stops at an epoch boundary)")
    return p


def settings_from(args: argparse.Namespace) -> FinetuneSettings:
    from model.config import Sampling

    sampling = None
    if args.span_s is not None or args.stride is not None:
        sampling = Sampling(args.frames, span_s=args.span_s, stride=args.stride)
    elif args.frames is not None:
        from model.errors import ConfigError

        raise ConfigError("--frames needs --span-s SECONDS or --stride FRAMES: the window the model trains with")
    return FinetuneSettings(
        data=args.data, base=args.base, out=args.out, epochs=args.epochs, batch=args.batch, lr=args.lr,
        weight_decay=args.weight_decay, warmup=args.warmup, label_smoothing=args.label_smoothing, seed=args.seed,
        device=args.device, precision=args.precision, threads=args.threads, freeze=Freeze.parse(args.freeze),
        prior=args.prior, sampling=sampling, windows_per_video=args.windows_per_video,
        reverse_pairs=args.reverse_pairs, val=args.val,
        val_share=args.val_share, symmetries=args.symmetries, domain=args.domain, license=args.license,
        cache=args.cache, workers=args.workers, resume=args.resume, time_budget_min=args.time_budget)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm
    except ImportError:
        print("error: model.finetune needs tqdm: pip install 'timesformer-stream[train]'", file=sys.stderr)
        return 1
    from model.finetune.run import finetune

    try:
        with logging_redirect_tqdm():
            result = finetune(settings_from(args), argv)
    except RecognizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    last = result.history.epochs[-1] if result.history.epochs else {}
    print(f"{result.out}: {len(result.history.epochs)} epochs, val accuracy {last.get('val_acc', float('nan')):.3f}"
          + (f" ({result.history.stopped_early})" if result.history.stopped_early else ""))
    return 0
