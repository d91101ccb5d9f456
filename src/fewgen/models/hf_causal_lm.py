"""A local Hugging Face causal language model, personalised in-context, by LoRA, or both.

Any causal-LM folder (GPT-2, Llama, Qwen, ... saved with ``save_pretrained``) behind the same
contract as every family, so every algorithm, ``fewgen adapt`` / ``sample`` / ``eval`` and the
text metrics work on it unchanged. The folder is read with ``local_files_only=True`` and
``trust_remote_code=False`` (its own Python is never run) and only from ``*.safetensors``
weights (a pickled ``.bin`` can run code when loaded: refused, with how to convert it).

**Retokenisation.** fewgen's text data are UTF-8 byte ids with ``EOS``/``PAD``
(:mod:`fewgen.models.bytes`); the model decodes them to strings and tokenises them with the
folder's own tokenizer, inside the model, so nothing outside the family knows about tokens.
Scores are per *string*: ``loss``/``nll`` are the exact ``-log p(x | support)`` in nats of the
string's tokens and of its end, so fewgen's bits per character (Unicode characters of the
decoded string + 1 for the end, :mod:`fewgen.metrics.text`) compare with the byte models
whatever the tokenizer. (It is the probability of the tokenisation the tokenizer gives, the
standard LM figure, not a sum over every tokenisation of the string.)

**The prompt template** (one example a line)::

    <bos>{shot_1}\\n{shot_2}\\n...{shot_K}\\n{x}\\n

``<bos>`` is the tokenizer's BOS token (else its EOS token); every line is tokenised on its
own, and the scored part is ``{x}\\n``: the newline is the end of the example. The shots appear
in their slot order (the context reads the support as an ordered prefix, so the family is not
permutation-invariant). ``model.extra.condition``:

- ``incontext``: the prompt above; no adapters (nothing to fine-tune or meta-train).
- ``lora``: LoRA adapters (Hu et al. 2022) on every linear projection of attention and MLP
  (PEFT's ``all-linear``: not the output head) and an empty prompt (just ``<bos>``).
- ``both``: the prompt and the adapters.

**Parameters are data.** The LoRA ``A``/``B`` matrices are the module's only ``nn.Parameter``s;
every base weight is a non-persistent buffer. So ``params_of``, the inner loop (leave-one-out
for the conditional algorithms), MAML, FOMAML and Reptile see and change only LoRA, through
``torch.func.functional_call``, with the base frozen, and a fewgen checkpoint stores only the
adapters (the base is re-read from ``path``). ``B`` starts at zero (PEFT's init): the zero-init
LoRA model is the base model. Dropout stays off (the loss must be a pure function). Tasks run
one at a time (``vmappable = False``): tokenising is data-dependent Python, which ``vmap``
cannot batch. :meth:`export_files` writes a standard PEFT adapter folder
(``adapter_config.json`` + ``adapter_model.safetensors``) beside an adapted checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from ..errors import ConfigError, DataError
from .base import Context, GenerativeModel, exact_nll, parse_extra
from .bytes import decode, encode_batch
from .utf8 import draw_token

CONDITIONS = ("incontext", "lora", "both")
INSTALL = "model.family=hf_causal_lm needs the hf extra: pip install 'fewgen[hf]' (transformers, peft)"


# ----------------------------------------------------------------------------- loading
def _require_hf() -> None:
    """One line on how to install the extra when transformers or peft is missing."""
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL) from None


def check_folder(path: str | Path) -> Path:
    """The model folder, checked: a config.json and safetensors weights (pickled .bin refused)."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise DataError(f"model.extra.path: no such folder '{folder}'")
    if not (folder / "config.json").is_file():
        raise DataError(f"model.extra.path: '{folder}' is not a Hugging Face model folder (no config.json)")
    if not any(folder.glob("*.safetensors")):
        if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
            raise DataError(
                f"{folder}: only pickled .bin weights, which can run code when loaded; fewgen reads safetensors only. "
                f"Convert once with: python -c \"from transformers import AutoModelForCausalLM as M; "
                f"M.from_pretrained('{folder}').save_pretrained('{folder}-safetensors')\"")
        raise DataError(f"{folder}: no *.safetensors weights")
    return folder


def _check_files(folder: Path) -> None:
    """Each file a loader will read, checked on its own so that the error names it: config.json
    and the tokenizer's JSON files parse, and every safetensors file's header covers the file
    (a truncated or damaged download)."""
    from safetensors import safe_open

    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        f = folder / name
        if f.is_file():
            try:
                json.loads(f.read_bytes().decode("utf-8"))
            except (ValueError, RecursionError) as e:
                raise DataError(f"{f}: damaged (not valid JSON: {str(e)[:80]})") from None
    for f in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as st:
                st.keys()
        except Exception as e:  # noqa: BLE001 - SafetensorError and OS errors alike: the file is unusable
            raise DataError(f"{f}: damaged weights file ({str(e).splitlines()[0][:120]})") from None


def load_base(folder: Path) -> tuple[nn.Module, Any]:
    """The causal LM and its tokenizer from a checked folder: local files only, no remote code.
    Any failure inside transformers is a one-line DataError naming the folder and the part."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    _check_files(folder)
    opts = {"local_files_only": True, "trust_remote_code": False}
    try:  # the tokenizer first: it is checked before the weights load
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **opts)
    except Exception as e:  # noqa: BLE001 - a user's folder: whatever fails, it is this folder's tokenizer
        raise DataError(f"{folder}: cannot load the tokenizer ({_what(e)})") from None
    _probe_tokenizer(folder, tokenizer)
    hf_logging.disable_progress_bar()  # fewgen's own progress lines only (and one-line errors)
    try:  # eager attention: second-order MAML needs grad of grad, which the fused SDPA kernels lack
        model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True, dtype=torch.float32,
                                                     attn_implementation="eager", **opts)
    except Exception as e:  # noqa: BLE001 - whatever fails, it is this folder's model
        raise DataError(f"{folder}: cannot load the model ({_what(e)})") from None
    return model, tokenizer


def _what(e: Exception) -> str:
    """An exception from a third-party loader on one line: its type and the start of its message."""
    return f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"


PROBE = ("a", "Hello", "ĉirkaŭ", "мир", "\n")  # every tokenizer fewgen can use turns each into tokens


def _probe_tokenizer(folder: Path, tokenizer: Any) -> None:
    """A tokenizer that turns text into no tokens would train on nothing (a loss of 0.0): refused
    when the folder is loaded, before any work."""
    require_tokens(folder, list(PROBE), tokenizer(list(PROBE), add_special_tokens=False)["input_ids"])


def require_tokens(folder: Path, texts: list[str], ids: list[list[int]]) -> None:
    """A DataError naming the first of ``texts`` that the tokenizer of ``folder`` turned into no
    tokens (``ids``): scored as zero nats, it would be a loss of 0.0 on nothing."""
    empty = next((t for t, line in zip(texts, ids) if not line), None)
    if empty is not None:
        raise DataError(f"{folder}: the tokenizer turns {empty!r} into no tokens; it must cover the text "
                        "(a byte-level tokenizer, as GPT-2's, covers every string)")


def _freeze_as_buffers(module: nn.Module) -> None:
    """Every parameter that is not a LoRA matrix becomes a non-persistent buffer (tied weights stay tied)."""
    for name, sub in module.named_modules():
        if ".lora_A" in f".{name}" or ".lora_B" in f".{name}":
            continue
        for pname, p in list(sub.named_parameters(recurse=False)):
            delattr(sub, pname)
            sub.register_buffer(pname, p.detach().requires_grad_(False), persistent=False)


def _with_lora(base: nn.Module, rank: int, alpha: float) -> nn.Module:
    """A PEFT model with LoRA on every linear projection (``all-linear``: attention and MLP)."""
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    conv = any(isinstance(m, Conv1D) for m in base.modules())  # GPT-2 stores weights (in, out)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear", lora_dropout=0.0,
                     fan_in_fan_out=conv, task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_peft_model(base, cfg)


# ----------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class HFCausalLMExtra:
    """The ``model.extra`` keys of ``hf_causal_lm`` (constructor arguments of the same names)."""

    path: str = ""  # required: a local Hugging Face causal-LM folder with safetensors weights
    condition: str = "both"  # incontext | lora | both (CONDITIONS; see the module docstring)
    rank: int = 8  # LoRA rank, >= 1
    alpha: float = 16.0  # LoRA scale numerator (the update is alpha / rank B A), > 0
    max_len: int = 0  # bytes per string incl. EOS, >= 1; 0 = the data's

    def validate(self, hidden: int) -> None:
        """One-line ConfigErrors naming the key of a missing or out-of-range value."""
        if not self.path:
            raise ConfigError("model.family=hf_causal_lm needs model.extra.path=FOLDER (a local Hugging Face "
                              "causal-LM folder with safetensors weights)")
        if self.condition not in CONDITIONS:
            raise ConfigError(f"model.extra.condition must be one of {', '.join(CONDITIONS)}, got {self.condition!r}")
        if self.rank < 1:
            raise ConfigError(f"model.extra.rank must be a positive integer, got {self.rank!r}")
        if not self.alpha > 0:
            raise ConfigError(f"model.extra.alpha must be a positive number, got {self.alpha!r}")
        if self.max_len < 0:
            raise ConfigError(f"model.extra.max_len must be a positive integer (or 0: the data's), got {self.max_len}")


class HFCausalLM(GenerativeModel):
    """A Hugging Face causal LM conditioned on the support in-context and/or by LoRA.

    Context (a dict, contract v2): ``ids`` (T, P) int64, the prompt's token ids left-aligned
    (``<bos>`` then the present shots in slot order, one a line; see the module docstring),
    and ``mask`` (T, P) bool, True on real tokens. P = 1 + K (L + 2) for a (T, K, L) support,
    so every task's context has one shape.
    """

    family = "hf_causal_lm"
    modality = "text"
    permutation_invariant = False  # the prompt shows the shots in their order
    Extra = HFCausalLMExtra
    vmappable = False  # tokenising is data-dependent Python: tasks run one at a time

    def __init__(self, path: str, condition: str = "both", rank: int = 8, alpha: float = 16.0,
                 max_len: int = 24) -> None:
        super().__init__()
        _require_hf()
        HFCausalLMExtra(str(path), condition, int(rank), float(alpha), int(max_len)).validate(hidden=0)  # no model.hidden
        self.folder = check_folder(path)
        self.condition, self.rank, self.alpha, self.max_len = condition, int(rank), float(alpha), int(max_len)
        base, self.tokenizer = load_base(self.folder)
        self.lm = base if condition == "incontext" else _with_lora(base, self.rank, self.alpha)
        _freeze_as_buffers(self.lm)
        self.lm.eval()
        tok = self.tokenizer
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if start is None:
            raise ConfigError(f"{self.folder}: the tokenizer has neither a BOS nor an EOS token to start a prompt")
        self.start_id = int(start)
        self.pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else start)

    def train(self, mode: bool = True) -> "HFCausalLM":
        """Dropout stays off in training too: the loss is a pure function of the parameters."""
        super().train(mode)
        self.lm.eval()
        return self

    def config_dict(self) -> dict[str, Any]:
        return {"path": str(self.folder), "condition": self.condition, "rank": self.rank, "alpha": self.alpha,
                "max_len": self.max_len}

    # ------------------------------------------------------------------ tokens
    def _lines(self, ids: Tensor) -> list[list[int]]:
        """Token ids of each string's line ``{x}\\n``: byte ids (N, L) -> N lists."""
        texts = [decode(row) + "\n" for row in ids.tolist()]
        lines = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        require_tokens(self.folder, texts, lines)
        return lines

    def _prompts(self, context: Context) -> list[list[int]]:
        """The real prompt tokens of each task of a context."""
        return [row[m].tolist() for row, m in zip(context["ids"], context["mask"])]

    def context(self, support: Tensor, mask: Tensor) -> Context:
        """support (T, K, L) byte ids, mask (T, K) -> the prompt (see the class docstring); it reads
        the shots in their slot order. With ``condition=lora`` the prompt is ``<bos>`` alone."""
        T, K, L = support.shape
        P = 1 + K * (L + 2)
        ids = torch.full((T, P), self.pad_id, dtype=torch.long, device=support.device)
        real = torch.zeros(T, P, dtype=torch.bool, device=support.device)
        for t in range(T):
            present = support[t][mask[t]] if self.condition != "lora" else support[t][:0]
            prompt = [self.start_id] + [tok for line in self._lines(present) for tok in line]
            if len(prompt) > P:
                raise ConfigError(f"{self.folder}: the tokenizer needs more than L + 2 = {L + 2} tokens for a line")
            ids[t, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
            real[t, : len(prompt)] = True
        return {"ids": ids, "mask": real}

    # ------------------------------------------------------------------ scores
    def _batch(self, prompts: list[list[int]], lines: list[list[int]], device: torch.device
               ) -> tuple[Tensor, Tensor, Tensor]:
        """Right-padded ``prompt + line`` sequences (B, S), their attention mask and the mask of
        the scored targets (B, S - 1): the line's tokens, each predicted from what precedes it."""
        seqs = [p + s for p, s in zip(prompts, lines)]
        S = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), S), self.pad_id, dtype=torch.long)
        attn = torch.zeros(len(seqs), S, dtype=torch.long)
        scored = torch.zeros(len(seqs), S - 1, dtype=torch.bool)
        for b, (p, s) in enumerate(zip(prompts, lines)):
            ids[b, : len(p) + len(s)] = torch.tensor(p + s)
            attn[b, : len(p) + len(s)] = 1
            scored[b, len(p) - 1 : len(p) + len(s) - 1] = True
        return ids.to(device), attn.to(device), scored.to(device)

    def loss(self, x: Tensor, context: Context, noise: Tensor | None = None) -> Tensor:
        """Exact -log p(x | support) in nats per string, x (T, N, L) byte ids -> (T, N): the
        tokens of ``{x}\\n`` given the prompt."""
        T, N, L = x.shape
        prompts = [p for p in self._prompts(context) for _ in range(N)]  # B = T * N
        ids, attn, scored = self._batch(prompts, self._lines(x.reshape(T * N, L)), x.device)
        logits = self.lm(input_ids=ids, attention_mask=attn).logits[:, :-1]  # (B, S-1, V)
        logp = F.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        return -(logp * scored).sum(-1).reshape(T, N)

    def nll(self, x: Tensor, context: Context, num_samples: int = 1, chunk: int = 256,
            generator: torch.Generator | None = None) -> Tensor:
        """The exact NLL (no latent: ``num_samples`` is unused), ``chunk`` strings per task per pass."""
        return exact_nll(self, x, context, chunk)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, context: Context, generator: torch.Generator | None = None,
               temperature: float = 1.0, max_len: int | None = None, top_p: float = 1.0) -> Tensor:
        """(T, n, L) byte ids of new lines: tokens drawn after the prompt until a newline (or EOS),
        decoded, cut to ``L - 1`` bytes at a character boundary. ``temperature <= 0`` is greedy;
        ``top_p < 1`` is nucleus sampling (Holtzman et al. 2020)."""
        L = max_len or self.max_len
        rows = []
        for prompt in self._prompts(context):
            texts = self._sample_lines(prompt, n, L + 1, generator, temperature, top_p)
            rows.append(encode_batch([_fit(s, L - 1) for s in texts], L))
        return torch.stack(rows).to(context["ids"].device)

    def _sample_lines(self, prompt: list[int], n: int, max_tokens: int, generator: torch.Generator | None,
                      temperature: float, top_p: float) -> list[str]:
        """n continuations of one prompt, each up to its first newline (or EOS), as strings."""
        dev = next(iter(self.lm.buffers())).device
        seq = torch.tensor(prompt, dtype=torch.long, device=dev)[None].repeat(n, 1)  # (n, P + steps)
        stop = {i for i in (self.tokenizer.eos_token_id, self.start_id) if i is not None}
        newline = self.tokenizer("\n", add_special_tokens=False)["input_ids"]
        kept: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        for step in range(max_tokens):
            logits = self.lm(input_ids=seq).logits[:, -1].float()  # (n, V)
            if step == 0:  # at least one character: no end first
                logits[:, sorted(stop | set(newline[:1] if len(newline) == 1 else []))] = float("-inf")
            tok = draw_token(logits, temperature, top_p, generator)
            seq = torch.cat([seq, tok[:, None]], 1)  # finished rows draw on, ignored
            for i, t in enumerate(tok.tolist()):
                if not done[i]:
                    done[i] = t in stop
                    kept[i] += [] if done[i] else [t]
                    done[i] = done[i] or "\n" in self.tokenizer.decode(kept[i])
            if all(done):
                break
        return [self.tokenizer.decode(k).split("\n")[0] for k in kept]

    # ------------------------------------------------------------------ PEFT export
    def export_files(self, folder: str | Path) -> None:
        """Write the current LoRA as a standard PEFT adapter folder (``adapter_config.json`` +
        ``adapter_model.safetensors``, PEFT's key names): ``peft.PeftModel.from_pretrained(base,
        folder)`` loads it as is. Nothing for ``condition=incontext`` (no adapters)."""
        if self.condition == "incontext":
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.lm.save_pretrained(str(folder))


def _fit(text: str, max_bytes: int) -> str:
    """``text`` cut at a character boundary to at most ``max_bytes`` UTF-8 bytes."""
    while len(text.encode("utf-8", errors="replace")) > max_bytes:
        text = text[:-1]
    return text.encode("utf-8", errors="replace").decode("utf-8")


# ----------------------------------------------------------------------------- building
def build_hf_causal_lm(model_cfg: ModelConfig, taskset_meta: dict) -> HFCausalLM:
    """An :class:`HFCausalLM` from the ``model.extra`` keys of :class:`HFCausalLMExtra` (``path``
    required) for text data."""
    extra = parse_extra(HFCausalLM, model_cfg)
    if taskset_meta.get("modality") != "text":
        raise ConfigError(f"hf_causal_lm models text; the data is {taskset_meta.get('modality')!r}")
    values = {**dataclasses.asdict(extra), "max_len": extra.max_len or int(taskset_meta.get("max_len", 24))}
    return HFCausalLM(**values)
