"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..config import Config, apply_overrides, load_config, replace


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml", help="a TOML preset (keys mirror fewgen.config)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")


def base_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config) if getattr(args, "config", None) else Config()
    return apply_overrides(cfg, getattr(args, "set", []) or [])


def with_data(cfg: Config, spec: str | None) -> Config:
    return replace(cfg, data={"spec": spec}) if spec else cfg


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    return path
