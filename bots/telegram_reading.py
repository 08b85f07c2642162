"""What a Telegram message carries for the core: its image (the photo size worth fetching, an
image file, a sticker), and whether it is addressed to the bot. Pure functions of the message."""

from __future__ import annotations

from telegram import Message, MessageEntity, PhotoSize

from bots.events import ImageRef


def pick_photo(sizes: tuple[PhotoSize, ...], min_side: int) -> PhotoSize:
    """The smallest size that still covers the model's input (cheaper to fetch and decode)."""
    ordered = sorted(sizes, key=lambda s: s.width * s.height)
    for size in ordered:
        if min(size.width, size.height) >= min_side:
            return size
    return ordered[-1]


def image_of(message: Message, *, min_side: int) -> ImageRef | None:
    """The image a message carries (best photo size, an image file, a sticker), not yet downloaded."""
    if message.photo:
        size = pick_photo(message.photo, min_side)
        return ImageRef(
            size.file_id,
            size=size.file_size,
            mime_type="image/jpeg",
            width=size.width,
            height=size.height,
        )
    document = message.document
    if document is not None:
        return ImageRef(
            document.file_id,
            size=document.file_size,
            mime_type=document.mime_type,
            file_name=document.file_name,
        )
    sticker = message.sticker
    if sticker is not None and not (sticker.is_animated or sticker.is_video):
        return ImageRef(sticker.file_id, size=sticker.file_size, mime_type="image/webp")
    return None


def addressed(message: Message, entities: dict[MessageEntity, str], *, bot_id: int, username: str) -> bool:
    """In groups: an @mention, ``/ask`` (ours), or a reply to one of the bot's messages."""
    username = username.lower()
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == bot_id:
        return True
    for entity, value in entities.items():
        if entity.type == MessageEntity.MENTION and value[1:].lower() == username:
            return True
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot_id:
            return True
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            command, _, target = value[1:].lower().partition("@")
            if command == "ask" and target in ("", username):
                return True
    return False
