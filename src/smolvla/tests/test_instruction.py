from smolvla.instruction import MAX_INSTRUCTION_LENGTH, check_instruction


def test_accepts_and_normalises_white_space():
    check = check_instruction("  pick up   the cube\n")
    assert check.accepted
    assert check.instruction == "pick up the cube"


def test_refuses_empty_and_blank():
    for text in ("", "   ", "\n\t"):
        check = check_instruction(text)
        assert not check.accepted
        assert "empty" in check.message


def test_refuses_over_long():
    check = check_instruction("a" * (MAX_INSTRUCTION_LENGTH + 1))
    assert not check.accepted
    assert str(MAX_INSTRUCTION_LENGTH) in check.message
    assert check_instruction("a" * MAX_INSTRUCTION_LENGTH).accepted


def test_refuses_control_characters_and_non_strings():
    assert not check_instruction("pick\x00up").accepted
    assert not check_instruction(None).accepted  # type: ignore[arg-type]
