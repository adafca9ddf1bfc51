"""Reading a BPF_MAP_TYPE_RINGBUF from user space (kernel/bpf/ringbuf.c).

The map's fd is mapped twice: its first page, read-write, holds the
consumer position; from the second page on, read-only, the producer
position's page and then the data area, mapped twice in a row so a record
that wraps reads contiguously. Each record has an 8-byte header: its
length, with bit 31 set while the producer still writes it (busy) and bit
30 when it was discarded, and an offset the reader does not need; records
are 8-byte aligned. Positions only grow; a position's offset in the data
is position & (size - 1). The reader consumes by storing the new consumer
position, which frees the space for the producer. Reading is memory
access only: no system call per record (a queue map would need one
BPF_MAP_LOOKUP_AND_DELETE_ELEM each, and one each to empty it: the
walks a build leaves run into the thousands).

On x86-64 an aligned 8-byte load or store is atomic and loads are not
reordered with other loads, which is what the kernel's
smp_load_acquire/smp_store_release pairs give on that architecture.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator

BUSY, DISCARD = 1 << 31, 1 << 30
HEADER = 8


class RingBuffer:
    def __init__(self, fd: int, size: int) -> None:
        """`size`: the map's max_entries, a power of 2 and a multiple of
        the page size."""
        page = mmap.PAGESIZE
        self.size = size
        self.mask = size - 1
        self._cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, 0)
        self._prod = mmap.mmap(fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._page = page
        # Records whose header could not be right, since the last take_damaged().
        self.damaged = 0

    def _positions(self) -> tuple[int, int]:
        (cons,) = struct.unpack_from("<Q", self._cons, 0)
        (prod,) = struct.unpack_from("<Q", self._prod, 0)
        return cons, prod

    def read(self) -> Iterator[bytes]:
        """The records written since the last read, consumed (each record
        as its bytes, the header left off): a record still being written
        (busy) ends the read, and is read next time; a discarded one is
        consumed unread. A record whose length runs past what the
        producer has written cannot be (its header is damaged), and
        where the next record starts is then unknown: everything up to
        the producer is consumed unread, and counted in `damaged`."""
        cons, prod = self._positions()
        data = self._page
        while cons < prod:
            at = data + (cons & self.mask)
            (length,) = struct.unpack_from("<I", self._prod, at)
            if length & BUSY:
                break  # the producer is still writing it: next time
            size = length & ~(BUSY | DISCARD)
            step = (size + HEADER + 7) & ~7
            if step > prod - cons:
                self.damaged += 1
                struct.pack_into("<Q", self._cons, 0, prod)
                return
            if not length & DISCARD:
                yield self._prod[at + HEADER : at + HEADER + size]
            cons += step
            struct.pack_into("<Q", self._cons, 0, cons)

    def take_damaged(self) -> int:
        """The damaged records counted since the last call."""
        n, self.damaged = self.damaged, 0
        return n

    def discard(self) -> None:
        """Drop everything written so far (records still being written stay)."""
        for _ in self.read():
            pass

    def close(self) -> None:
        self._cons.close()
        self._prod.close()
