"""Training batches built ahead, off the training thread.

The batch of update ``s`` is a pure function of (mixture, seed, s), so building
batches ahead cannot change what is trained: a background thread builds the
batches of steps ``start .. stop - 1`` in order, as tensors (in pinned memory
when the model is on CUDA, so that the copy to the device is asynchronous), and
keeps at most ``depth`` of them waiting. An error in the thread is raised in the
training thread at the step it belongs to; closing stops the thread.
"""

from __future__ import annotations

import queue
import threading

_DONE = object()


class Prefetcher:
    def __init__(self, mixture, batch_size: int, start: int, stop: int, pin: bool = False, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._next = start
        self._args = (mixture, batch_size, start, stop, pin)
        self._thread = threading.Thread(target=self._run, name="mechrare-batches", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        import torch

        mixture, batch_size, start, stop, pin = self._args
        try:
            for step in range(start, stop):
                batch = mixture.batch(step, batch_size)
                ids, labels = torch.as_tensor(batch.input_ids), torch.as_tensor(batch.labels)
                if pin:
                    ids, labels = ids.pin_memory(), labels.pin_memory()
                if not self._put((step, ids, labels)):
                    return
        except BaseException as exc:  # handed to the training thread
            self._put((_DONE, exc, None))
            return
        self._put((_DONE, None, None))

    def get(self, step: int):
        """(input ids, labels) of update ``step``, as CPU tensors (pinned where asked)."""
        if step != self._next:
            raise RuntimeError(f"batches are prefetched in order: expected step {self._next}, asked for {step}")
        got, ids, labels = self._queue.get()
        if got is _DONE:
            raise ids if ids is not None else RuntimeError(f"no prefetched batch for step {step}")
        self._next += 1
        return ids, labels

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
