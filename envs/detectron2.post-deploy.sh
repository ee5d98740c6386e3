#!/usr/bin/env bash
# Run by Snakemake right after it creates envs/detectron2.yaml's environment: detectron2 is not
# on PyPI or conda-forge, and its setup.py imports torch, so it is built without build isolation.
set -euo pipefail
python -m pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'
