"""Baselines the method is measured against: :mod:`.grpo` (TRL's GRPO trainer on equal terms:
the same model, problems, prompts, reward and LoRA shape; ``reasonmaxxer grpo``)."""
