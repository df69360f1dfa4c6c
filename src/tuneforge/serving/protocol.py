"""Request and response models that mirror OpenAI's API (and tuneforge's /v1/classify), apart from the routes.

Unknown request fields are accepted and ignored (as OpenAI-compatible servers do), so clients that send newer
fields keep working; fields tuneforge reads are typed strictly enough that a wrong type is a 400, never a crash.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[TextPart] = Field(description="Text, or a list of text parts (joined).")

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class SamplingFields(_Request):
    model: str = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1, description="New tokens at most (the server's limit applies).")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 is greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    stop: str | list[str] | None = Field(None, description="Up to 4 stop strings; the stop text is not returned.")
    stream: bool = False
    user: str | None = None

    def stop_list(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer name of max_tokens (wins if both).")

    def model_post_init(self, _context: Any) -> None:
        if self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens


class CompletionRequest(SamplingFields):
    prompt: str | list[str] = Field(description="Sent to the run as one user turn in its chat template.")

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class EmbeddingRequest(_Request):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class ClassifyRequest(_Request):
    """tuneforge extension: labels with probabilities, or entity spans for token-classification runs."""

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[list[str]] = Field(
        description="A text, texts, or pre-split token lists (token-classification runs).")
    top_k: int = Field(5, ge=1, le=5, description="Labels returned per input, most probable first.")

    def inputs(self) -> list[Any]:
        if isinstance(self.input, str):
            return [self.input]
        return list(self.input)


# ---- responses -------------------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tuneforge"
    task: str = Field(description="tuneforge: the run's task (classification, sft, ...); 'embedding' for default.")
    servable: bool = Field(True, description="tuneforge: False for catalogue base models (owned_by "
                                             "'tuneforge-base'): listed to fine-tune from, not served for inference.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ChatChoice(BaseModel):
    index: int
    message: dict[str, str]
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str
    logprobs: None = None


class Completion(BaseModel):
    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[EmbeddingData]
    usage: Usage


class LabelScore(BaseModel):
    label: str
    score: float


class Entity(BaseModel):
    type: str
    text: str
    start: int = Field(description="Index of the first token.")
    end: int = Field(description="Index one past the last token.")


class ClassifyResult(BaseModel):
    index: int
    label: str | None = None
    score: float | None = None
    top: list[LabelScore] | None = None
    labels: list[str] | None = Field(None, description="Multi-label runs: every label over the threshold.")
    tokens: list[str] | None = None
    tags: list[str] | None = None
    entities: list[Entity] | None = None


class ClassifyResponse(BaseModel):
    id: str = Field(default_factory=lambda: new_id("classify"))
    object: Literal["classification"] = "classification"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    data: list[ClassifyResult]
    usage: Usage


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
