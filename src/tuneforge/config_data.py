"""The `data` section of a run config: files, columns, cleaning, splitting, augmentation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tuneforge.config_base import Strict


class ColumnsConfig(Strict):
    text: str = "text"
    text_pair: str | None = None
    label: str = "label"
    tokens: str = "tokens"
    tags: str = "tags"
    prompt: str = "prompt"
    completion: str = "completion"
    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"
    messages: str = "messages"
    chosen: str = "chosen"
    rejected: str = "rejected"


class CleanConfig(Strict):
    """Cleaning of the training data. Validation/test files you give are normalised but never filtered."""

    normalize_unicode: bool = Field(True, description="Unicode NFC normalisation.")
    normalize_whitespace: bool = Field(True, description="Collapse runs of whitespace, strip ends (not in generative "
                                       "tasks: they keep their text as given, \\r\\n -> \\n).")
    dedupe: Literal["none", "exact", "normalized"] = Field(
        "normalized", description="'exact' drops identical examples; 'normalized' also case/punctuation variants.")
    drop_conflicts: bool = Field(True, description="Drop texts that appear with different labels.")
    min_tokens: int = Field(1, ge=0, description="Drop examples with fewer tokens.")
    max_tokens: int | None = Field(None, ge=1, description="Drop examples with more tokens (None: keep, truncate).")
    redact_pii: bool = Field(False, description="Replace e-mails, phone numbers, IBANs and card numbers.")
    remove_leakage: bool = Field(True, description="Drop training examples whose text also occurs in val/test.")


class SplitConfig(Strict):
    train: float = Field(0.8, gt=0, lt=1)
    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)
    stratify: bool = True
    seed: int | None = Field(None, description="Defaults to training.seed.")

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split ratios must add up to 1.0, got {total:g}")
        return self


class ParaphraseConfig(Strict):
    """Paraphrases written by a generative run you trained (or any finished sft run): `load_run(run).generate`."""

    run: str = Field(..., description="Finished generative run folder that writes the paraphrases.")
    n: int = Field(1, ge=1, le=20, description="Paraphrases per training example.")
    prompt: str = Field("Paraphrase this sentence, keeping its meaning: {text}",
                        description="User message sent to the run; {text} is the example's text.")
    temperature: float = Field(0.8, ge=0, description="Sampling temperature (0: greedy, one distinct paraphrase).")
    max_new_tokens: int = Field(48, ge=1, le=512)


class AugmentConfig(Strict):
    """New training examples from the training split only (validation and test are never touched)."""

    n: int = Field(4, ge=0, le=50, description="EDA-edited copies per training example (0: none).")
    edits: list[Literal["swap", "delete", "insert", "synonym"]] = Field(
        ["swap", "delete", "insert", "synonym"], min_length=1,
        description="EDA edits the copies take in turn: random swap, random deletion, insertion of a "
                    "neighbour word, synonym replacement (synonyms: nearest whole words in the base model's "
                    "input embedding matrix).")
    alpha: float = Field(0.1, gt=0, le=0.5, description="Share of an example's words each edit changes (>= 1).")
    neighbours: int = Field(10, ge=1, le=100, description="Nearest embedding words a synonym is drawn from.")
    min_similarity: float = Field(0.4, ge=-1, le=1, description="Cosine similarity a synonym needs.")
    paraphrase: ParaphraseConfig | None = None
    keep: Literal["always", "if_better"] = Field(
        "always", description="'if_better': train with and without augmentation (two runs, <name>-augmented and "
                              "<name>-plain) and keep the one with the better validation metric; both are recorded.")
    seed: int | None = Field(None, description="Defaults to training.seed.")


class DataConfig(Strict):
    train: str | list[str] = Field(..., description="Training file(s), a datasets folder, or a hub dataset name.")
    validation: str | list[str] | None = Field(None, description="Own validation file(s); else split from train.")
    test: str | list[str] | None = Field(None, description="Own test file(s); else split from train.")
    format: Literal["auto", "jsonl", "json", "csv", "tsv", "parquet", "hf_dir", "hub", "conll"] = "auto"
    columns: ColumnsConfig = ColumnsConfig()
    labels: list[str] | None = Field(None, description="The allowed labels; others are an error. None: inferred.")
    max_length: int = Field(128, ge=8, le=32768, description="Tokens per example after truncation.")
    clean: CleanConfig = CleanConfig()
    split: SplitConfig = SplitConfig()
    skip_invalid: bool = Field(False, description="Drop and count invalid records instead of stopping.")
    augment: AugmentConfig | None = Field(None, description="Augment the training split (small datasets); "
                                                            "see docs/augment.md.")
