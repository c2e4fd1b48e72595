"""Turning a problem into the exact text the model sees.

The model's chat template is used when it has one, a plain ``Question:/Answer:`` format
otherwise; either way the prompt asks for the final answer in ``\\boxed{}``. The template is
part of every recorded config, so a number can be traced to the prompt that made it.
"""

from __future__ import annotations

from ..config import PromptConfig


def uses_chat_template(tokenizer, cfg: PromptConfig) -> bool:
    has = getattr(tokenizer, "chat_template", None) is not None
    if cfg.chat_template == "on" and not has:
        from ..errors import UserError

        raise UserError("--chat-template on, but the tokenizer has no chat template")
    return has if cfg.chat_template == "auto" else cfg.chat_template == "on"


def build_prompt(tokenizer, problem: str, cfg: PromptConfig) -> str:
    """The full prompt string (special tokens included) for one problem."""
    user = cfg.prompt_template.replace("{problem}", problem)
    if uses_chat_template(tokenizer, cfg):
        messages = [{"role": "user", "content": user}]
        if cfg.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": cfg.system_prompt})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    system = f"{cfg.system_prompt}\n\n" if cfg.system_prompt else ""
    return f"{system}Question: {user}\nAnswer:"


def stop_strings(tokenizer, cfg: PromptConfig) -> list[str]:
    """Plain-format generations stop before the model invents the next question."""
    return [] if uses_chat_template(tokenizer, cfg) else ["\nQuestion:"]
