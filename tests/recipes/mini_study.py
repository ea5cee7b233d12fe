"""The header of the small study the study, executor and Slurm tests run (a few steps on synthetic images)."""

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
