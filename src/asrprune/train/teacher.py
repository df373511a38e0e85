"""The teacher's job: a Conformer-Transducer trained from scratch, written as a model file."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Any

import torch

from asrprune.config import section_dict, settings_from_dict
from asrprune.data.batching import UtteranceDataset
from asrprune.data.features import Cmvn
from asrprune.data.tokenizer import Tokenizer
from asrprune.errors import AsrpruneError
from asrprune.model import ModelConfig, Transducer, save_model
from asrprune.train.settings import TrainSettings
from asrprune.train.trainer import train
from asrprune.workdir import claim_work_dir, file_digests, split_files


def resolve_model_config(
    model_config: Mapping[str, Any] | str, tokenizer: Tokenizer
) -> ModelConfig:
    """ModelConfig from a dict (or its JSON) whose vocabulary is the tokenizer's.

    A missing or null ``vocab_size`` is taken from the tokenizer; any other value must
    equal it.
    """
    # a copy: the caller's mapping is not changed
    values = section_dict(
        dict(model_config) if isinstance(model_config, Mapping) else model_config, "model"
    )
    vocab = values.get("vocab_size")
    if vocab is not None and vocab != tokenizer.vocab_size:
        raise AsrpruneError(
            f"model.vocab_size is {vocab} but tokenizer {tokenizer.source} has "
            f"{tokenizer.vocab_size} tokens; leave vocab_size unset to take the tokenizer's"
        )
    values["vocab_size"] = tokenizer.vocab_size
    return ModelConfig.from_dict(values, "model")


def train_teacher(
    *,
    train_manifest: str | os.PathLike,
    train_features: str | os.PathLike,
    dev_manifest: str | os.PathLike,
    dev_features: str | os.PathLike,
    tokenizer_path: str | os.PathLike,
    cmvn_path: str | os.PathLike,
    model_config: Mapping[str, Any] | str,
    settings: Mapping[str, Any] | str | TrainSettings,
    out_model: str | os.PathLike,
    work_dir: str | os.PathLike,
    mlflow_ids: str | os.PathLike | None = None,
    run_name: str = "teacher",
    threads: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict:
    """Train the Conformer-Transducer teacher and write it as a model file.

    Checkpoints go to ``work_dir`` (a rerun resumes there); the model file ``out_model``
    (``asrprune.model.save_model``) carries the tokenizer and CMVN, and its metadata the
    step, the last dev WER and the settings. Returns a summary dict.
    """
    if not isinstance(settings, TrainSettings):
        settings = settings_from_dict(TrainSettings, settings, "teacher.train")
    if threads:
        torch.set_num_threads(threads)
    tokenizer = Tokenizer.load(tokenizer_path)
    cmvn = Cmvn.load(cmvn_path)
    config = resolve_model_config(model_config, tokenizer)
    train_data = UtteranceDataset(train_manifest, train_features, tokenizer, cmvn)
    dev_data = UtteranceDataset(dev_manifest, dev_features, tokenizer, cmvn)
    for name, data in (("train", train_data), ("dev", dev_data)):
        if data.dropped:
            print(
                f"{name}: {len(data.dropped)} utterances skipped at feature extraction",
                file=sys.stderr,
            )
    splits = {"train": (train_manifest, train_features), "dev": (dev_manifest, dev_features)}
    files = {**split_files(splits), "tokenizer": tokenizer_path, "cmvn": cmvn_path}
    identity = {
        "job": "teacher",
        "model": dataclasses.asdict(config),
        "settings": dataclasses.asdict(settings),
        "inputs": file_digests(files),
    }
    claim_work_dir(work_dir, identity)
    torch.manual_seed(settings.seed)  # the initial weights
    model = Transducer(config)
    counts = model.param_counts()
    print(
        f"teacher: {counts.encoder:,} encoder parameters ({counts.prunable:,} in blocks), "
        f"{counts.total:,} in all; {len(train_data)} train, {len(dev_data)} dev utterances",
        file=sys.stderr,
    )
    result = train(
        model,
        train_data,
        dev_data,
        settings,
        work_dir,
        mlflow_ids=mlflow_ids,
        run_name=run_name,
        tags={"stage": "teacher"},
        params={"model_params": {"encoder": counts.encoder, "prunable": counts.prunable}},
        device=device,
        threads=threads,
        progress=progress,
    )
    summary = {
        "stage": "teacher",
        "step": result.step,
        "dev_wer": result.dev_wer,
        "encoder_params": counts.encoder,
        "prunable_params": counts.prunable,
        "train_utterances": len(train_data),
        "mlflow_run_id": result.mlflow_run_id,
        "settings": settings.to_dict(),
    }
    # under torchrun every rank holds the same model; rank 0 writes it (asrprune.io)
    save_model(out_model, model.cpu(), tokenizer.to_bytes(), cmvn.to_dict(), summary)
    return summary
