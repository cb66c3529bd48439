"""Password hashing runs off the event loop, in threads that yield the CPU to serving."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from domain.users import passwords


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are a Linux feature")
async def test_hashing_threads_run_below_the_serving_threads_priority() -> None:
    serving = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    loop = asyncio.get_running_loop()

    hashing = await loop.run_in_executor(
        passwords._pool, lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    )
    ok, _ = await passwords.verify_password_async(
        passwords.hash_password("correct horse battery"), "correct horse battery"
    )

    assert hashing == min(19, serving + passwords.HASH_NICE)
    assert ok
