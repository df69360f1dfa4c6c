"""The files API (`/v1/files`), as OpenAI's: upload (multipart), list, retrieve, content, delete.

Every route needs a key of scope `jobs`. The store (serving/file_store.py) does the work; these routes read the
form, map the store's errors to the server's JSON errors (400 naming the field, 404 for an unknown id) and run the
blocking parts (disk, SQLite, validation) off the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from tuneforge.serving.file_store import FileStore, FileStoreError, UnknownFile
from tuneforge.serving.protocol_files import PURPOSES, FileDeleted, FileList, FileObject
from tuneforge.serving.routes_inference import ERRORS, require_scope
from tuneforge.serving.state import ApiError

router = APIRouter(dependencies=[Depends(require_scope("jobs"))], responses=ERRORS, tags=["files"])

_UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "purpose"],
    "properties": {"file": {"type": "string", "format": "binary"},
                   "purpose": {"type": "string", "enum": list(PURPOSES)}}}}}}}


def file_store(request: Request) -> FileStore:
    """The app's store over its workspace (made on first use; it holds only paths, so one per app is enough)."""
    store = getattr(request.app.state, "file_store", None)
    if store is None:
        store = request.app.state.file_store = FileStore(request.app.state.serving.settings.workspace)
    return store


def _api_error(err: FileStoreError) -> ApiError:
    if isinstance(err, UnknownFile):
        return ApiError(404, str(err), param=err.param, code="file_not_found")
    return ApiError(400, str(err), param=err.param, code="invalid_value")


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except FileStoreError as err:
        raise _api_error(err) from None


async def _form(request: Request) -> tuple[str | None, str, bytes]:
    """(filename, purpose, bytes) from the multipart body, or a 400 naming the missing or wrong field."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(400, "upload the file as multipart/form-data with fields 'file' and 'purpose'",
                       param="file", code="invalid_value")
    try:
        form = await request.form()
    except Exception as exc:  # a malformed multipart body is the client's fault: 400, not 500
        raise ApiError(400, f"unreadable multipart body ({exc})", param="file", code="invalid_value") from None
    upload, purpose = form.get("file"), form.get("purpose")
    if upload is None or isinstance(upload, str):
        raise ApiError(400, "the form has no file part 'file'", param="file", code="missing_field")
    if not isinstance(purpose, str) or not purpose:
        raise ApiError(400, f"the form has no field 'purpose' (one of: {', '.join(PURPOSES)})", param="purpose",
                       code="missing_field")
    return upload.filename, purpose, await upload.read()


@router.post("/v1/files", response_model=FileObject, openapi_extra=_UPLOAD_SCHEMA)
async def create_file(request: Request) -> FileObject:
    """Store and validate a training file: status `processed`, or `error` with each bad line in status_details."""
    filename, purpose, data = await _form(request)
    return await _call(file_store(request).create, filename, purpose, data)


@router.get("/v1/files", response_model=FileList)
async def list_files(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=10000),
                     order: str = "desc", purpose: str | None = None) -> FileList:
    files, has_more = await _call(file_store(request).list, after, limit, order, purpose)
    return FileList(data=files, first_id=files[0].id if files else None, last_id=files[-1].id if files else None,
                    has_more=has_more)


@router.get("/v1/files/{file_id}", response_model=FileObject)
async def retrieve_file(file_id: str, request: Request) -> FileObject:
    return await _call(file_store(request).get, file_id)


@router.get("/v1/files/{file_id}/content", response_class=Response)
async def file_content(file_id: str, request: Request) -> Response:
    data = await _call(file_store(request).content, file_id)
    return Response(data, media_type="application/octet-stream")


@router.delete("/v1/files/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: str, request: Request) -> FileDeleted:
    await _call(file_store(request).delete, file_id)
    return FileDeleted(id=file_id)
