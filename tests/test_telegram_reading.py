"""What a Telegram message carries for the core, read from hand-built messages (no network)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest
from telegram import Chat, Message, MessageEntity, PhotoSize, Sticker, User

from bots.telegram_reading import addressed, image_of, pick_photo

BOT = User(99, "VQA", is_bot=True, username="vqa_bot")
ALICE = User(7, "alice", is_bot=False)
GROUP = Chat(-100, Chat.SUPERGROUP)


def message(text: str = "", *, entities: Sequence[MessageEntity] = (), **fields: Any) -> Message:
    return Message(1, dt.datetime.now(dt.UTC), GROUP, from_user=ALICE, text=text, entities=entities, **fields)


def photo(side: int) -> PhotoSize:
    return PhotoSize(f"f{side}", f"u{side}", side, side, file_size=side * side)


def test_the_smallest_photo_size_that_covers_the_model_input() -> None:
    sizes = (photo(90), photo(320), photo(800))
    assert pick_photo(sizes, 64).width == 90
    assert pick_photo(sizes, 100).width == 320
    assert pick_photo(sizes, 1000).width == 800  # none covers it: the largest
    ref = image_of(message(photo=sizes), min_side=100)
    assert ref is not None and (ref.source, ref.mime_type, ref.width) == ("f320", "image/jpeg", 320)


def test_an_animated_sticker_is_no_image() -> None:
    still = Sticker("s", "us", 512, 512, is_animated=False, is_video=False, type=Sticker.REGULAR)
    moving = Sticker("m", "um", 512, 512, is_animated=True, is_video=False, type=Sticker.REGULAR)
    ref = image_of(message(sticker=still), min_side=64)
    assert ref is not None and ref.mime_type == "image/webp"
    assert image_of(message(sticker=moving), min_side=64) is None
    assert image_of(message("just text"), min_side=64) is None


@pytest.mark.parametrize(
    ("text", "entity", "expected"),
    [
        ("@VQA_bot what color?", MessageEntity(MessageEntity.MENTION, 0, 8), True),
        ("@someone_else what color?", MessageEntity(MessageEntity.MENTION, 0, 13), False),
        ("/ask what color?", MessageEntity(MessageEntity.BOT_COMMAND, 0, 4), True),
        ("/ask@vqa_bot what color?", MessageEntity(MessageEntity.BOT_COMMAND, 0, 12), True),
        ("/ask@other_bot what color?", MessageEntity(MessageEntity.BOT_COMMAND, 0, 14), False),
        ("what color?", None, False),
    ],
)
def test_addressed_in_a_group(text: str, entity: MessageEntity | None, expected: bool) -> None:
    said = message(text, entities=[entity] if entity else [])
    assert addressed(said, said.parse_entities(), bot_id=BOT.id, username="vqa_bot") is expected


def test_a_reply_to_the_bot_is_addressed_to_it() -> None:
    answer = Message(2, dt.datetime.now(dt.UTC), GROUP, from_user=BOT, text="blue")
    said = message("and its shape?", reply_to_message=answer)
    assert addressed(said, said.parse_entities(), bot_id=BOT.id, username="vqa_bot")
