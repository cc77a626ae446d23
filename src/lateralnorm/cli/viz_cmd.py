"""`lateralnorm viz geometry|study` and `lateralnorm explore`: pictures of the layers and of a study."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lateralnorm.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    viz = sub.add_parser("viz", help="draw pictures: LayerNorm geometry animations, study plots")
    vsub = viz.add_subparsers(dest="viz_command", metavar="WHAT")
    viz.set_defaults(func=lambda a: _need_sub(viz))

    geo = vsub.add_parser(
        "geometry",
        help="animations (GIF + key-frame PNG) of LayerNorm's primitives and of trained (Linear→norm)×k stacks",
    )
    geo.add_argument(
        "scenes",
        nargs="*",
        metavar="SCENE",
        help="which pictures: stretch, shift, fold, project2, project3, affine, stack, or all (default: all)",
    )
    geo.add_argument("-o", "--out", default="viz/geometry", help="output folder (default: viz/geometry)")
    geo.add_argument("--frames", type=int, default=24, help="frames per animation (default: 24)")
    geo.add_argument("--no-gif", action="store_true", help="write only the key-frame PNGs (faster)")
    geo.add_argument(
        "--steps", type=int, default=400, help="Adam steps for each trained stack (default: 400)"
    )
    geo.add_argument(
        "--norms", default="ln,relu>ln,gelu>ln,dn", help="norms of the stack scene, comma separated"
    )
    geo.set_defaults(func=_geometry)

    st = vsub.add_parser(
        "study", help="learning curves, forest plot, cross-talk and sparsity plots of a study"
    )
    st.add_argument(
        "study_dir", metavar="STUDY_DIR", help="a study folder (written by `lateralnorm study run`)"
    )
    st.add_argument("-o", "--out", default=None, help="output folder (default: STUDY_DIR/plots)")
    st.add_argument("--baseline", default=None, help="the norm to compare against in the forest plot")
    st.set_defaults(func=_study)

    ex = sub.add_parser(
        "explore", help="write (or serve) the interactive explorer page: one offline HTML file"
    )
    ex.add_argument("-o", "--out", default="explorer.html", help="output file (default: explorer.html)")
    ex.add_argument(
        "--serve", action="store_true", help="serve the page on 127.0.0.1 instead of writing a file"
    )
    ex.add_argument("--port", type=int, default=0, help="port for --serve (default: 0, a free one)")
    ex.set_defaults(func=_explore)


def _need_sub(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _geometry(args: argparse.Namespace) -> int:
    from lateralnorm.viz import geometry_anim

    if args.frames < 2:
        raise UsageError(f"--frames {args.frames} is too few; use at least 2 (24 is the default)")
    if args.steps < 0:
        raise UsageError(f"--steps {args.steps} is negative; use 0 or more (400 is the default)")
    norms = [n.strip() for n in args.norms.split(",") if n.strip()]
    written = geometry_anim.render_scenes(
        args.scenes or ["all"],
        args.out,
        frames=args.frames,
        gif=not args.no_gif,
        steps=args.steps,
        norms=norms,
    )
    for path in written:
        print(path)
    return 0


def _study(args: argparse.Namespace) -> int:
    from lateralnorm.viz import plots

    out = Path(args.out) if args.out else Path(args.study_dir) / "plots"
    for path in plots.plot_study(args.study_dir, out, baseline=args.baseline):
        print(path)
    return 0


def _explore(args: argparse.Namespace) -> int:
    from lateralnorm.viz import explorer

    if not args.serve:
        print(explorer.write_explorer(args.out))
        return 0
    server, url = explorer.serve_explorer(args.port)
    print(f"serving the explorer at {url}  (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.shutdown()
        server.server_close()
