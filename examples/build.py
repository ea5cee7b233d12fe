"""Writes examples/*.ipynb, one notebook per course document (../shared/course/), from the cells below; with
``--execute`` also runs each one (nbclient) with a budget injected after its ``parameters`` cell, papermill-style,
so the committed notebooks hold the outputs of one real run.

    python examples/build.py                                   # write the notebooks, no outputs
    python examples/build.py --execute --dataset folder:../shared/datasets/cifar10-png.tar.gz --stand-in-weights

Each notebook runs its course study (configs/studies/course/) through ``cifarlab.api`` under a :class:`Budget`, then
reads the results with ``api.load_study`` / ``api.load_run``: every figure is the report's own.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

PARAMETERS = '''# Budget (papermill parameters). The defaults take minutes on a laptop CPU; for the course's own
# budget set per_class, test_per_class, epochs, max_steps_per_epoch and resolution to 0 (the study's values, GPU-scale).
dataset = "cifar10"         # cifar10 (downloads), folder:PATH (an image folder or .tar.gz), synthetic
per_class = 20              # labelled train images per class
test_per_class = 20         # test images per class
epochs = 2                  # at most this many epochs per run
max_steps_per_epoch = 0     # 0 = every batch
resolution = 64             # at most this side (px) for ImageNet-weight models (the course uses 224)
stand_in_weights = False    # True: random weights instead of ImageNet's (offline machines): NOT a transfer result
arm = "course recipe"       # the study's arm to run: "course recipe" or "cifarlab defaults"
out = "runs/{name}"         # where the run directories and report.html go
study_file = "../configs/studies/course/{study}.toml"'''

SETUP = '''%matplotlib inline
import matplotlib
from IPython.display import display

from cifarlab import api

matplotlib.rcParams["figure.dpi"] = 60  # small images keep the notebook light
# the study's models that start from ImageNet weights
imagenet_models = {models}
weights = api.stand_in_weights(imagenet_models, out + "/weights") if stand_in_weights else {{}}
if weights:
    print("STAND-IN WEIGHTS: the ImageNet models start from random weights; their numbers are not transfer results")
budget = api.Budget(dataset=dataset, per_class=per_class, test_per_class=test_per_class, epochs=epochs,
                    max_steps_per_epoch=max_steps_per_epoch, resolution=resolution, embed_samples=200,
                    weights=weights)
print(api.study_plan(study_file, out))'''

RUN = '''failed, report = api.study(study_file, out, arms=[arm], adjust=budget)
print("runs that did not complete:", failed or "none")
print("report:", report)
study = api.load_study(out)
study'''

TABLE = '''study.findings_table()  # every comparison the report states (Welch's t-test over seeds)'''

RUNS_TABLE = '''study.runs_table()  # each run's facts side by side'''

COMPARE = '''study.compare()  # each arm's headline metric, mean ± sd over its seeds'''


def notebook(title: str, doc: str, study: str, name: str, models: list[str], steps: list[tuple[str, str]]):
    """A notebook: the document it follows, the parameters cell, setup, the study run, then its steps
    (markdown, code) pairs."""
    cells = [new_markdown_cell(f"# {title}\n\nThe steps of the course document `{doc}` through cifarlab's Python "
                               f"API. The recipes are those of `configs/studies/course/{study}.toml` (its note says "
                               "where they depart from the document); the budget below shrinks only the data, the "
                               "epochs and the image side, so the numbers of a laptop run are not the course's.")]
    params = new_code_cell(PARAMETERS.format(name=name, study=study))
    params.metadata["tags"] = ["parameters"]
    cells += [params, new_code_cell(SETUP.format(models=repr(models))),
              new_markdown_cell("## Run the study's arm\n\nRuns already complete in `out` are kept; an interrupted "
                                "one resumes. The report (`report.html`) is written beside the runs."),
              new_code_cell(RUN)]
    for md, code in steps:
        cells += [new_markdown_cell(md), new_code_cell(code)]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


NOTEBOOKS = {
    "notebook-scratch-transfer-supcon": lambda: notebook(
        "ResNet18 from scratch, ImageNet transfer and SupCon", "notebook-scratch-transfer-supcon.txt", "notebook",
        "notebook", ["resnet18_imagenet"], [
            ("## From scratch: train and test curves", 'scratch = study.run("course-scratch-resnet18-s0")\n'
             'display(scratch)\nscratch.curves()'),
            ("## Frozen vs fine-tuned ImageNet ResNet18, SupCon vs cross-entropy", COMPARE),
            ("The comparisons, with their tests:", TABLE),
            ("## Confusion matrices per regime", 'for run in study.runs.values():\n'
             '    if run.status == "complete":\n        display(run.confusion())'),
            ("Per-class accuracy, one row per arm (the mean over its seeds):", 'study.compare("per_class")'),
            ("## t-SNE of the SupCon and cross-entropy embeddings", 'display(study.run("supcon-resnet18-s0")'
             '.embedding())\nstudy.run("supcon_ce-resnet18-s0").embedding()'),
        ]),
    "theory-cnn-transfer-contrastive": lambda: notebook(
        "Freezing, a new head, one rate vs discriminative rates", "theory-cnn-transfer-contrastive.txt", "theory",
        "theory", ["resnet18_imagenet"], [
            ("## What each regime trains\n\nFrozen layers keep their weights; the parameter counts and the "
             "learning rate of each group show it.", RUNS_TABLE),
            ("Learning rates per parameter group: one rate for every layer, against rates falling towards the input "
             "(discriminative):", 'for name in ("course-finetune-onerate-resnet18_imagenet-s0", '
             '"course-finetune-discriminative-resnet18_imagenet-s0"):\n'
             '    groups = study.run(name).summary.get("lr_groups", {})\n'
             '    print(name, {k: f"{v:.2g}" for k, v in list(groups.items())[:6]})'),
            ("## Accuracy per regime", COMPARE),
            ("The comparisons, with their tests:", TABLE),
            ("## A tiny dataset: from scratch vs frozen features", 'display(study.run("course-tiny-scratch-resnet18-s0")'
             '.confusion())\nstudy.run("course-tiny-linear-resnet18_imagenet-s0").confusion()'),
        ]),
    "tutorial-transfer-alexnet-resnet18-efficientnet": lambda: notebook(
        "AlexNet, ResNet18 and EfficientNet-B0 as frozen feature extractors",
        "tutorial-transfer-alexnet-resnet18-efficientnet.txt", "tutorial", "tutorial",
        ["alexnet", "resnet18_imagenet", "efficientnet_b0"], [
            ("## Parameters, training time and accuracy side by side", RUNS_TABLE),
            ("## Accuracy per backbone", COMPARE),
            ("## Where each backbone errs", 'for run in study.runs.values():\n'
             '    if run.status == "complete":\n        display(run.confusion())'),
            ("The most confident mistakes of the ResNet18 probe:",
             'study.run("course-linear-resnet18_imagenet-s0").mistakes()'),
        ]),
    "assignment-rotnet": lambda: notebook(
        "RotNet: rotation pretraining, then the last block or the whole network", "assignment-rotnet.txt", "rotnet",
        "rotnet", [], [
            ("## The rotation pretext task", 'rotation = study.run("course-rotation-s0")\ndisplay(rotation)\n'
             'rotation.curves()'),
            ("Its encoder's test embeddings (t-SNE, coloured by class it never saw):", 'rotation.embedding()'),
            ("## Last block + linear layer, and the whole network: from rotation vs from random weights",
             COMPARE),
            ("The comparisons, with their tests:", TABLE),
            ("## Confusion matrices of the fine-tuned networks", 'for name in ("course-partial-rotinit-s0", '
             '"course-finetune-rotinit-s0"):\n    display(study.run(name).confusion())'),
        ]),
    "assignment-transfer-vgg16-resnet18": lambda: notebook(
        "VGG16 vs ResNet18, last conv block unfrozen", "assignment-transfer-vgg16-resnet18.txt",
        "transfer-vgg16-resnet18", "transfer-vgg16-resnet18", ["vgg16", "resnet18_imagenet"], [
            ("## Accuracy, parameters and time", RUNS_TABLE),
            ("## Training curves", 'for name in ("course-partial-vgg16-s0", "course-partial-resnet18_imagenet-s0"):\n'
             '    display(study.run(name).curves())'),
            ("## Confusion matrices", 'for name in ("course-partial-vgg16-s0", "course-partial-resnet18_imagenet-s0"):\n'
             '    display(study.run(name).confusion())'),
            ("## Side by side", COMPARE),
        ]),
}


def inject(nb, **params) -> None:
    """Papermill's convention: a cell tagged ``injected-parameters`` right after the ``parameters`` cell."""
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    cell = new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items()))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(at + 1, cell)


def execute(nb, timeout: int = 1800) -> None:
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--execute", action="store_true", help="run each notebook and keep its outputs")
    ap.add_argument("--only", nargs="*", default=None, help="notebook names (default: all)")
    ap.add_argument("--dataset", default=None, help="injected dataset (e.g. folder:PATH)")
    ap.add_argument("--stand-in-weights", action="store_true", help="random weights for the ImageNet models")
    ap.add_argument("--param", nargs="*", default=[], help="more injected parameters, KEY=PYTHON_LITERAL")
    args = ap.parse_args(argv)
    import ast

    params = {k: ast.literal_eval(v) for k, v in (p.split("=", 1) for p in args.param)}
    if args.dataset:
        params["dataset"] = args.dataset
    if args.stand_in_weights:
        params["stand_in_weights"] = True
    for name, make in NOTEBOOKS.items():
        if args.only and name not in args.only:
            continue
        nb = make()
        if args.execute:
            if params:
                inject(nb, **params)
            t = time.perf_counter()
            execute(nb)
            print(f"{name}: executed in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        nbformat.write(nb, HERE / f"{name}.ipynb")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
