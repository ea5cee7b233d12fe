"""Each course study's course arm, resolved as a run would resolve it (the real study loader, config resolution, split
and step plan; nothing trains), read against a table of what its document states.

A table row is (key, expected value, source). The source is one of:
  ``doc(words)``           the document states it: ``words`` is a short quote of the line it comes from;
  ``chosen(words)``        the document is silent: the study chose, and its note says so in ``words``;
  ``departs(doc, words)``  the study departs from the document's ``doc`` line, and its note lists it in ``words``.
Quotes are a few words, checked to occur in the document, never copied text.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from cifarlab.config import make_config
from cifarlab.engine.loop import StepPlan
from cifarlab.models import create_model
from cifarlab.recipes.context import fit_spec, split_of
from cifarlab.studies.plan import PlannedRun, load_study

REPO = Path(__file__).resolve().parents[2]
STUDIES = REPO / "configs" / "studies" / "course"
DOCUMENTS = REPO.parent / "shared" / "course"
CIFAR10_TRAIN = torch.arange(10).repeat_interleave(5000)  # CIFAR-10's train labels: 5,000 images per class


@dataclass(frozen=True)
class Source:
    doc: str | None = None  # a few words of the document's line
    note: str | None = None  # a few words of the study's note


def doc(words: str) -> Source:
    return Source(doc=words)


def chosen(words: str) -> Source:
    return Source(note=words)


def departs(doc_words: str, note_words: str) -> Source:
    return Source(doc=doc_words, note=note_words)


@functools.cache
def _partial_blocks(model: str) -> tuple[str, ...]:
    return tuple(create_model(model, num_classes=10, weights="none").partial_blocks())


SPLIT_KEYS = ("per_class", "train_fraction", "val_fraction", "seed", "split_seed")
_SPLITS: dict[tuple, int] = {}


def _train_images(cfg) -> int:
    """The run's train images out of CIFAR-10's 50,000 (runs that share every split key share the split)."""
    key = (type(cfg), *(getattr(cfg, k) for k in SPLIT_KEYS))
    if key not in _SPLITS:
        _SPLITS[key] = len(split_of(cfg, CIFAR10_TRAIN, 10).train)
    return _SPLITS[key]


def facts(run: PlannedRun) -> dict:
    """What the run resolves to before its first step: its config, its split of CIFAR-10's train set and its step
    plan (the values config.json's `resolved` block and the first log line state), and its trained layers."""
    cfg = make_config(run.recipe, overrides=run.keys)
    n_train = _train_images(cfg)
    plan = StepPlan.of(fit_spec(cfg, amp="off", progress="off"), n_train)
    if run.recipe == "partial":
        trained = [*_partial_blocks(cfg.model), "head"]
    else:
        trained = {"linear": ["head"]}.get(run.recipe, ["all"])
    out = {"lr": plan.peak_lr, "warmup_steps": plan.warmup, "batch_size": plan.batch_size,
           "train_images": n_train, "trained": trained}
    for key in ("model", "optimizer", "schedule", "epochs", "augment", "resolution", "test_fraction", "selection",
                "weight_decay", "label_smoothing", "momentum", "nesterov", "per_class", "rotations", "head_init",
                "backbone_lr_factor", "layer_decay", "weights", "init", "proj_hidden", "proj_dim", "views"):
        out[key] = getattr(cfg, key, None)
    return out


# ---- the RotNet assignment (assignment-rotnet.txt); the rotation pretraining's keys are shared by both studies
NO_RECIPE = "no optimiser, rate, epochs or batch"
ROT_ADAM = [("optimizer", "adam", chosen(NO_RECIPE)), ("lr", 1e-3, chosen("Adam at a constant 1e-3")),
            ("schedule", "constant", chosen("Adam at a constant 1e-3")), ("warmup_steps", 0, chosen("no warm-up")),
            ("batch_size", 128, chosen("batch 128")), ("weight_decay", 0.0, chosen("no weight decay")),
            ("resolution", 32, doc("small (32x32) images"))]
ROT_TEST_LOSS = departs("find the lowest test loss and report the corresponding accuracy",
                        "choosing on the test loss would make the test figure part of the training decision")
ROTATION = [("model", "resnet18_imagenet", doc("We will use the PyTorch ResNet18 implementation")),
            ("rotations", "random", doc("all training images are randomly rotated by 0, 90, 180, or 270 degrees")),
            ("trained", ["all"], doc("Train a ResNet18 on the Rotation task")),
            ("epochs", 15, chosen("15 epochs of rotation")),
            ("selection", "best_val", ROT_TEST_LOSS),
            ("train_images", 45_000, departs("all training images are randomly rotated",
                                             "so 45,000 images train")), *ROT_ADAM]
LAST_BLOCK = ("trained", ["layer4", "head"],
              doc("fine-tune only the weights of the final block of convolutional layers and linear layer"))
WHOLE = ("trained", ["all"], doc("train *the full network* on the supervised CIFAR10 classification task"))
ROTNET_NET = ("model", "resnet18_imagenet", doc("We will use the PyTorch ResNet18 implementation"))
FROM_RANDOM = ("init", "random", doc("Initializing from the Rotation model or from random weights"))
FINETUNE = [("model", "resnet18_imagenet", doc("We will use the PyTorch ResNet18 implementation")),
            ("epochs", 10, chosen("10 of each fine-tune")), ("head_init", "random", chosen("a new linear layer")),
            ("backbone_lr_factor", 1.0, chosen("the unfrozen layers at the same rate")),
            ("selection", "best_val", ROT_TEST_LOSS), *ROT_ADAM]

RotNet = {
    "course-rotation": ROTATION,
    "course-partial-rotinit": [LAST_BLOCK, *FINETUNE],
    "course-partial-randinit": [LAST_BLOCK, FROM_RANDOM, *FINETUNE],
    "course-finetune-rotinit": [WHOLE, *FINETUNE],
    "course-finetune-randinit": [WHOLE, FROM_RANDOM, *FINETUNE],
}

RotNetExtra = {
    "course-rotation": ROTATION,
    "course-lowlabel-rotinit-pc\\d+": [LAST_BLOCK, ("head_init", "random", chosen("a new linear layer")),
                                       ROTNET_NET, *ROT_ADAM],
    "course-lowlabel-scratch-pc\\d+": [ROTNET_NET, ("trained", ["all"], doc("supervised CIFAR10 training code")),
                                       *ROT_ADAM],
    "course-rotation-resnet26d": [("rotations", "random", doc("all training images are randomly rotated")),
                                  ("model", "timm:resnet26d", doc("Use a more advanced model than ResNet18")),
                                  *ROT_ADAM[:-1], ("resolution", 64, chosen("at 64 px"))],
    "course-finetune-resnet26d-(rot|rand)init": [("model", "timm:resnet26d",
                                                  doc("Use a more advanced model than ResNet18")),
                                                 ("trained", ["all"], doc("as well as for transfer to supervised")),
                                                 *ROT_ADAM[:-1], ("resolution", 64, chosen("at 64 px"))],
    "course-rotation-imagenette": [("rotations", "random", doc("all training images are randomly rotated")),
                                   ("trained", ["all"], doc("train a rotation prediction model on the larger")),
                                   *ROT_ADAM[:-1]],
    "course-finetune-imagenette-rotinit": [WHOLE, *ROT_ADAM],
}

# ---- the VGG16 / ResNet18 transfer assignment (assignment-transfer-vgg16-resnet18.txt)
SUBMISSION = [("optimizer", "adam", doc("Initialize Adam optimizers for each model")),
              ("lr", 1e-3, doc("with a learning rate of 0.001")),
              ("schedule", "constant", doc("optimizer_resnet18 = optim.Adam(resnet18.parameters(), lr=0.001)")),
              ("warmup_steps", 0, doc("optimizer_resnet18 = optim.Adam(resnet18.parameters(), lr=0.001)")),
              ("weight_decay", 0.0, doc("optimizer_resnet18 = optim.Adam(resnet18.parameters(), lr=0.001)")),
              ("backbone_lr_factor", 1.0, doc("optimizer_resnet18 = optim.Adam(resnet18.parameters(), lr=0.001)")),
              ("label_smoothing", 0.0, doc("criterion = nn.CrossEntropyLoss()")),
              ("epochs", 5, doc("Train for 5 epochs")), ("batch_size", 64, doc("batch_size=64")),
              ("augment", "autoaugment_flip", doc("AutoAugment with CIFAR10 policy")),
              ("resolution", 224, doc("Use transformations from VGG16_Weights.DEFAULT.transforms as a base")),
              ("head_init", "random", doc("nn.Linear(num_features, 10)")),
              ("train_images", 5_000, doc("Use 10% of the training and testing datasets")),
              ("test_fraction", 0.1, doc("Use 10% of the training and testing datasets")),
              ("selection", "last", doc("resnet18_accuracy = calculate_accuracy(resnet18, resnet18_test_loader"))]
Transfer = {
    "course-partial-vgg16": [("model", "vgg16", doc("vgg16 = models.vgg16(weights=VGG16_Weights.DEFAULT)")),
                             ("trained", ["conv5", "fc", "head"], doc("Unfreeze the last")), *SUBMISSION],
    "course-partial-resnet18_imagenet": [("model", "resnet18_imagenet",
                                          doc("resnet18 = models.resnet18(weights=ResNet18_Weights.DEFAULT)")),
                                         ("trained", ["layer4", "head"],
                                          doc("for param in resnet18.layer4.parameters()")), *SUBMISSION],
}

# ---- the transfer tutorial (tutorial-transfer-alexnet-resnet18-efficientnet.txt)
TUTORIAL = [("optimizer", "adam", doc("optimizer = optim.Adam(")), ("lr", 1e-3, doc("lr=1e-3,")),
            ("schedule", "cosine", doc("CosineAnnealingLR(optimizer, T_max=NUM_EPOCHS)")),
            ("warmup_steps", 0, doc("Cosine annealing: smoothly reduces LR from 1e-3 to ~0 over NUM_EPOCHS")),
            ("batch_size", 128, doc("BATCH_SIZE = 128 if")), ("augment", "cropflip",
                                                               doc("RandomCrop+RandomHorizontalFlip")),
            ("resolution", 224, doc("RESIZE_SIZE = 256 if TRAIN_IMAGE_SIZE == 224")),
            ("trained", ["head"], doc("the optimiser only tracks the new head")),
            ("train_images", 50_000, doc("train_dataset = datasets.CIFAR10(root='./data', train=True")),
            ("test_fraction", 1.0, doc("train=True, download=True, transform=train_transform")),
            ("selection", "last", doc("Final AlexNet test accuracy: {alexnet_history[\"val_acc\"][-1]")),
            ("label_smoothing", 0.0, doc("criterion = nn.CrossEntropyLoss()"))]
Tutorial = {
    "course-linear-alexnet": [("model", "alexnet", doc("classifier[6] is the layer we will replace")),
                              ("epochs", 2, doc("NUM_EPOCHS = 2")), ("weight_decay", 5e-4, doc("weight_decay=5e-4")),
                              *TUTORIAL],
    "course-linear-resnet18_imagenet": [("model", "resnet18_imagenet", doc("ResNet18 is training only ~5,130")),
                                        ("epochs", 2, doc("Fine-tuning ResNet18 on CIFAR-10 for 2 epochs")),
                                        ("weight_decay", 5e-4, doc("same lr, weight_decay, NUM_EPOCHS")), *TUTORIAL],
    "course-linear-efficientnet_b0": [("model", "efficientnet_b0", doc("effnet.classifier[1] = nn.Linear(")),
                                      ("epochs", 3, doc("Fine-tuning EfficientNet-B0 on CIFAR-10 for 3 epochs")),
                                      ("weight_decay", 0.0, doc("effnet_optimizer = optim.Adam(filter(lambda p: "
                                                                "p.requires_grad, effnet.parameters()), lr=1e-3)")),
                                      *TUTORIAL],
}

# ---- the chapter notebook (notebook-scratch-transfer-supcon.txt)
RESNET18_IMAGENET = ("model", "resnet18_imagenet", doc("using an ImageNet-pretrained ResNet18"))
Notebook = {
    "course-scratch-resnet18": [("model", "resnet18", chosen("CIFAR-stem ResNet18 (the notebook's network")),
                                ("optimizer", "sgd", doc("train ResNet18 using SGD with momentum")),
                                ("momentum", 0.9, chosen("plain momentum 0.9")),
                                ("nesterov", False, chosen("plain momentum 0.9")),
                                ("schedule", "cosine", departs("and a learning rate schedule", "a cosine schedule")),
                                ("warmup_steps", 0, chosen("without warm-up")), ("lr", 0.1, chosen("SGD 0.1")),
                                ("batch_size", 128, chosen("batch 128")), ("epochs", 30, chosen("30 epochs")),
                                ("augment", "cropflip", doc("random crop with padding, horizontal flip")),
                                ("trained", ["all"], doc("Training ResNet18 from Scratch"))],
    "course-linear-resnet18_imagenet": [RESNET18_IMAGENET, ("resolution", 32, chosen("the same 32-px")),
                                        ("augment", "cropflip", chosen("crop/flip pipeline")),
                                        ("trained", ["head"], doc("only training the final linear layer"))],
    "course-finetune-resnet18_imagenet": [RESNET18_IMAGENET, ("resolution", 32, chosen("the same 32-px")),
                                          ("head_init", "random", chosen("a new linear head from random weights")),
                                          ("backbone_lr_factor", 1.0, chosen("the whole network at one rate")),
                                          ("trained", ["all"], doc("and with full fine-tuning"))],
    "supcon-resnet18": [("proj_hidden", 512, doc("nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, emb_dim)")),
                        ("proj_dim", 128, doc("emb_dim: int = 128")),
                        ("views", 2, doc("drawing multiple augmented views of each image"))],
    "supcon_ce-resnet18": [("trained", ["all"], doc("comparing performance to s"))],
}

# ---- the theory chapter (theory-cnn-transfer-contrastive.txt)
CHAPTER_NET = ("model", "resnet18_imagenet", doc("models.resnet18(weights=models.ResNet18_Weights.DEFAULT)"))
NEW_HEAD = ("head_init", "random", doc("resnet.fc = torch.nn.Linear(in_features, 10)"))
Theory = {
    "course-linear-resnet18_imagenet": [CHAPTER_NET, ("trained", ["head"], doc("for param in resnet.parameters():"))],
    "course-partial-resnet18_imagenet": [CHAPTER_NET, NEW_HEAD, ("trained", ["layer4", "head"],
                                                                doc("fine-tune only higher layers"))],
    "course-finetune-onerate-resnet18_imagenet": [
        CHAPTER_NET, NEW_HEAD, ("trained", ["all"], doc("Using the same learning rate for all layers")),
        ("backbone_lr_factor", 1.0, doc("Using the same learning rate for all layers")),
        ("layer_decay", 1.0, doc("Using the same learning rate for all layers"))],
    "course-finetune-discriminative-resnet18_imagenet": [
        CHAPTER_NET, NEW_HEAD, ("trained", ["all"], doc("Use discriminative learning rates")),
        ("layer_decay", 0.8, chosen("falling 0.8x per block")), ("backbone_lr_factor", 0.1, chosen("0.1x the head"))],
    "course-tiny-scratch-resnet18": [("per_class", 100, chosen("100 labelled images per class")),
                                     ("trained", ["all"], doc("Training deep networks from scratch on tiny datasets"))],
    "course-tiny-linear-resnet18_imagenet": [CHAPTER_NET, ("per_class", 100, chosen("100 labelled images per class")),
                                             ("trained", ["head"], doc("Fix: Use transfer learning"))],
}

# study file -> (its document, its table, the course-arm entries that are not compared and may run one seed)
TABLES = {
    "rotnet": ("assignment-rotnet.txt", RotNet, set()),
    # the extra credit's rotation runs are shared pretraining; ImageNette's fine-tune is compared with nothing
    "rotnet-extra": ("assignment-rotnet.txt", RotNetExtra,
                     {"course-rotation", "course-rotation-resnet26d", "course-rotation-imagenette",
                      "course-finetune-imagenette-rotinit"}),
    "transfer-vgg16-resnet18": ("assignment-transfer-vgg16-resnet18.txt", Transfer, set()),
    "tutorial": ("tutorial-transfer-alexnet-resnet18-efficientnet.txt", Tutorial, set()),
    "notebook": ("notebook-scratch-transfer-supcon.txt", Notebook, set()),
    "theory": ("theory-cnn-transfer-contrastive.txt", Theory, set()),
}


def _squash(text: str) -> str:
    return " ".join(text.split())


def _course_runs(stem: str) -> tuple[dict, dict[str, list[PlannedRun]]]:
    """The study's meta and its course-arm runs grouped by the table entry whose name pattern they match."""
    meta, planned = load_study(STUDIES / f"{stem}.toml", "/nonexistent")
    _, table, _ = TABLES[stem]
    groups: dict[str, list[PlannedRun]] = {key: [] for key in table}
    for run in planned:
        if run.keys.get("arm") != "course recipe":
            continue
        matched = [key for key in table if re.fullmatch(rf"{key}(-s\d+)?", run.name)]
        assert len(matched) == 1, f"{stem}: course run {run.name} matches {matched} in the document's table"
        groups[matched[0]].append(run)
    return meta, groups


def test_every_course_study_has_a_table():
    assert {p.stem for p in STUDIES.glob("*.toml")} == set(TABLES)


@pytest.mark.parametrize("stem", sorted(TABLES))
def test_the_course_arm_resolves_to_what_its_document_states(stem):
    """Every course-arm run (every seed and sweep value) resolves to each row of its document's table."""
    _, groups = _course_runs(stem)
    _, table, _ = TABLES[stem]
    for key, rows in table.items():
        assert groups[key], f"{stem}: no course run named like {key}"
        for run in groups[key]:
            got = facts(run)
            for name, expected, _ in rows:
                assert got[name] == pytest.approx(expected) if isinstance(expected, float) else \
                    got[name] == expected, f"{stem}: {run.name}: {name} = {got[name]!r}, document: {expected!r}"


@pytest.mark.parametrize("stem", sorted(TABLES))
def test_each_row_cites_its_document_and_each_departure_or_choice_is_in_the_note(stem):
    meta, _ = _course_runs(stem)
    document, table, _ = TABLES[stem]
    note = _squash(meta["note"])
    path = DOCUMENTS / document
    text = _squash(path.read_text(encoding="utf-8")) if path.is_file() else None
    for key, rows in table.items():
        for name, _, source in rows:
            assert source.doc or source.note, (key, name)
            if source.note:
                assert _squash(source.note) in note, f"{stem}: {key}: {name}: the note does not say {source.note!r}"
            if source.doc and text is not None:
                assert _squash(source.doc) in text, f"{stem}: {key}: {name}: {document} has no {source.doc!r}"
            if source.doc:
                assert len(source.doc) <= 110, f"{stem}: {key}: {name}: quote a few words, not the text"
    if text is None:
        pytest.skip(f"the course documents are not at {DOCUMENTS}: the quotes were not checked")


@pytest.mark.parametrize("stem", sorted(TABLES))
def test_the_arms_an_assignment_compares_run_three_seeds(stem):
    """Every compared course-arm configuration runs seeds 0, 1 and 2, so its sentences are tested."""
    _, groups = _course_runs(stem)
    _, _, single = TABLES[stem]
    for key, runs in groups.items():
        if key in single:
            continue
        configs: dict[tuple, set[int]] = {}
        for run in runs:
            rest = tuple(sorted((k, str(v)) for k, v in run.keys.items() if k not in ("seed", "name", "init")))
            configs.setdefault(rest, set()).add(run.keys["seed"])
        assert configs and all(seeds >= {0, 1, 2} for seeds in configs.values()), (stem, key, configs)


def test_the_rotation_arm_shows_no_warm_up_where_the_recipe_default_has_one():
    """The rotation recipe's default warms up for an epoch; the course arm (Adam at a constant 1e-3) must not."""
    from cifarlab.config import RotationConfig

    assert RotationConfig().warmup_epochs > 0  # the default the course arm overrides
    _, groups = _course_runs("rotnet")
    for run in groups["course-rotation"]:
        got = facts(run)
        assert got["warmup_steps"] == 0 and got["schedule"] == "constant", (run.name, got)
