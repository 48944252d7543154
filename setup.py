"""eventlm: neuromorphic event streams on Hugging Face conventions (JAX/Flax EventSSM).

Install with the pinned versions CI tests with:  pip install -c constraints.txt -e ".[test]"
"""

from setuptools import find_packages, setup

# tokenizers/ and model_cards/ are data folders at the top of the repository (tokenizers/ must never
# hold an __init__.py: it would shadow the `tokenizers` package transformers imports). They ship
# inside the installed package as eventlm/_data/tokenizers and eventlm/_data/model_cards.
DATA = {"eventlm._data.tokenizers": "tokenizers", "eventlm._data.model_cards": "model_cards"}

setup(
    name="eventlm",
    version="0.1.0",
    description="Neuromorphic event streams as a first-class citizen of the Hugging Face world: "
    "event tokenizers, Hub event datasets and a JAX/Flax EventSSM.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["eventlm", "eventlm.*"]) + list(DATA),
    package_dir=DATA,
    package_data={"eventlm._data.tokenizers": ["*.json"], "eventlm._data.model_cards": ["*.md", "*.jinja"]},
    include_package_data=True,
    install_requires=[
        "transformers>=5,<6",
        "jax>=0.7,!=0.10.2",  # jaxlib 0.10.2 miscompiles fused window reductions on CPU (tests/test_jax_regressions.py)
        "flax>=0.11",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11",
        "safetensors>=0.5",
        "huggingface-hub>=1.0",
        "datasets>=4",
        "tonic>=1.6",
        "expelliarmus>=1.1",
        "aedat>=2",
        "tqdm",
        "numba>=0.60",  # the CPU streaming kernel (eventlm/models/eventssm/streaming_cpu_kernel.py)
        "threadpoolctl>=3",  # the kernel's matmuls on one BLAS thread (no collapse beside a busy process)
        "numpy>=2",
        "scipy",
        "soundfile",  # decoding audio for eventlm convert-audio (libsndfile: wav, flac, ogg, mp3)
        "jinja2",
        "pyyaml",
        "matplotlib",
        "tensorboardX",
        "espeakng-loader>=0.2",  # eSpeak NG and its voices (GPL-3.0, a separate library loaded with ctypes): the spoken-digit default
    ],
    extras_require={
        "torch": ["torch"],  # the CPU wheel is enough: reading original Spike-Driven Transformer checkpoints
        # lauscher (LGPL-2.1, the SHD authors' cochlea chain): the reference tests/test_audio.py runs beside eventlm's
        "test": ["pytest", "olah", "torch", "lauscher"],
    },
    entry_points={"console_scripts": ["eventlm=eventlm.cli:main"]},
)
