"""A ``multipart/form-data`` body parsed in memory.

Starlette's form parser spools file parts above 1 MB to temporary files; the service keeps every upload in memory
instead (the body is already bounded by ``--max-body-mb``), so nothing a client sends is written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, parse_options_header


class FormError(ValueError):
    """A body that is not usable multipart form data; ``status``: 415 (another content type) or 400."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Part:
    """One form field: ``name``; ``filename`` (None for a plain field; the client's name, never opened);
    ``content_type`` as declared; ``data`` the bytes."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def parse_form(content_type: str | None, body: bytes, *, max_parts: int = 64) -> list[Part]:
    """The parts of a ``multipart/form-data`` body, in order."""
    if not content_type:
        raise FormError(415, "no Content-Type: send multipart/form-data with the audio in the field 'file'")
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise FormError(415, f"Content-Type {kind.decode('latin-1')!r} is not accepted: send multipart/form-data "
                             "with the audio in the field 'file'")
    boundary = options.get(b"boundary")
    if not boundary:
        raise FormError(400, "multipart/form-data without a boundary")
    parts: list[Part] = []
    state: dict = {}

    def on_part_begin() -> None:
        state.update(headers={}, chunks=[], field=b"", value=b"", open=True)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["chunks"].append(data[start:end])

    def on_part_end() -> None:
        state["open"] = False
        disposition, params = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = params.get(b"name")
        if disposition != b"form-data" or name is None:
            raise FormError(400, "a multipart part without a form-data name")
        filename = params.get(b"filename")
        declared = state["headers"].get(b"content-type")
        parts.append(Part(
            name=name.decode("utf-8", errors="replace"),
            filename=filename.decode("utf-8", errors="replace") if filename is not None else None,
            content_type=declared.decode("latin-1") if declared else None,
            data=b"".join(state["chunks"]),
        ))
        if len(parts) > max_parts:
            raise FormError(400, f"more than {max_parts} form fields")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_end": lambda: state.update(ended=True),
    })
    try:
        parser.write(body)
        parser.finalize()
    except FormError:
        raise
    except Exception as err:  # python-multipart's MultipartParseError and friends
        raise FormError(400, f"malformed multipart body ({str(err)[:160] or type(err).__name__})") from None
    if state.get("open") or (body.strip() and not state.get("ended")):
        raise FormError(400, "the multipart body is truncated (no closing boundary)")
    return parts


__all__ = ["FormError", "Part", "parse_form"]
