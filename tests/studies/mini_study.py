"""The small study the study, executor and Slurm tests run (a few steps on synthetic images): its header, and
rotation pretraining then fine-tuning from each seed's rotation run."""

HEADER = """
[study]
name = "mini"

[defaults]
dataset = "synthetic:4:30:10"
model = "cnn_small"
image_size = 16
epochs = 1
batch_size = 16
lr = 0.05
progress = "off"
embed_samples = 20
device = "cpu"
num_threads = 1
"""


def rotation_then_finetune(name: str, per_class: str) -> str:
    """The header, two rotation seeds and a fine-tune from each (``init = "@rot-s{seed}"``), the fine-tune named
    ``name`` with ``per_class`` (a TOML value: one number or a sweep)."""
    return HEADER + f"""
[[runs]]
recipe = "rotation"
name = "rot-s{{seed}}"
seeds = [0, 1]

[[runs]]
recipe = "finetune"
init = "@rot-s{{seed}}"
name = "{name}"
series = "rotation + finetune"
per_class = {per_class}
seeds = [0, 1]
"""
