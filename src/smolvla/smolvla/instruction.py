"""Validation of the language instructions a policy is conditioned on."""

from __future__ import annotations

from dataclasses import dataclass

#: Longest instruction accepted, in characters. The model reads at most 48 tokens, so anything longer is
#: truncated by the tokenizer anyway; the character limit refuses pasted paragraphs with a clear reason instead.
MAX_INSTRUCTION_LENGTH = 512


@dataclass(frozen=True)
class InstructionCheck:
    """Outcome of validating an instruction: the cleaned text when accepted, the reason when refused."""

    accepted: bool
    instruction: str
    message: str


def check_instruction(text: str) -> InstructionCheck:
    """Validate an instruction from outside (a service call, a parameter).

    Leading and trailing white space is removed. Empty instructions, instructions with control characters other
    than white space, and instructions longer than MAX_INSTRUCTION_LENGTH are refused with a reason.
    """
    if not isinstance(text, str):
        return InstructionCheck(False, "", f"instruction must be a string, got {type(text).__name__}")
    cleaned = " ".join(text.split())
    if not cleaned:
        return InstructionCheck(False, "", "instruction is empty")
    if len(cleaned) > MAX_INSTRUCTION_LENGTH:
        return InstructionCheck(
            False, "", f"instruction has {len(cleaned)} characters; the limit is {MAX_INSTRUCTION_LENGTH}"
        )
    if any(not ch.isprintable() for ch in cleaned):
        return InstructionCheck(False, "", "instruction contains control characters")
    return InstructionCheck(True, cleaned, f"instruction set: {cleaned!r}")
