"""What a Discord message carries for the core: its images, and the image of the message it
replies to (or whether Discord hides that one from the bot)."""

from __future__ import annotations

import contextlib

import discord

from bots.events import ImageRef


def image_ref(attachment: discord.Attachment) -> ImageRef:
    return ImageRef(
        attachment.url,
        size=attachment.size,
        mime_type=(attachment.content_type or "").split(";")[0] or None,
        file_name=attachment.filename,
        width=attachment.width,
        height=attachment.height,
    )


def images_of(message: discord.Message) -> tuple[ImageRef, ...]:
    """The image attachments (an undeclared type may be one); else the others, for the core to refuse."""
    images = [a for a in message.attachments if a.content_type is None or a.content_type.startswith("image/")]
    return tuple(image_ref(a) for a in (images or message.attachments))


async def replied_image(
    message: discord.Message, me: discord.ClientUser, *, content_intent: bool
) -> tuple[ImageRef | None, bool]:
    """The image of the message this one replies to; or whether Discord hides it from us."""
    reference = message.reference
    if reference is None or reference.message_id is None:
        return None, False
    referenced = reference.resolved
    if not isinstance(referenced, discord.Message):
        with contextlib.suppress(discord.HTTPException):
            referenced = await message.channel.fetch_message(reference.message_id)
    if not isinstance(referenced, discord.Message):
        return None, False
    images = images_of(referenced)
    if images:
        return images[0], False
    # without the content intent, other people's messages arrive without their attachments
    hidden = not content_intent and referenced.author.id != me.id
    return None, hidden
