#!/usr/bin/env python3
"""A reference model process for Surge's external model protocol (docs/models.md).

It labels an image by what it can read from the file itself, its format and
dimensions ("jpeg-64x64", score 1), using the standard library only; any
other file is refused ("error\t..."). Switches for tests, by environment:

  SIZES_START_DELAY=<seconds>  wait this long before the ready line
  SIZES_GARBAGE=1              answer every request with a line that breaks the protocol
  SIZES_TWICE=1                answer every request twice
  SIZES_HOLD=<file>            the first process to get a request creates <file> holding
                               its pid, and then never answers (to be killed or timed out);
                               processes started after that answer normally
  SIZES_LONG=<what>            a line of 70,000 characters: "ready" as the ready line,
                               "answer" as the answer to a PNG, "stderr" on stderr before
                               answering a PNG
  SIZES_CLOSE_STDOUT=1         given a PNG, close stdout and stay alive
  SIZES_IGNORE_EOF=1           keep running after the end of input, and ignore SIGTERM
"""
import os
import signal
import struct
import sys
import time


def dimensions(data):
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(data):
            if data[i] != 0xFF:
                raise ValueError("corrupt JPEG: no marker at byte %d" % i)
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
                i += 2
                continue
            (length,) = struct.unpack(">H", data[i + 2:i + 4])
            # Start of frame: every SOFn but DHT (C4), JPG (C8) and DAC (CC).
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return "jpeg", width, height
            i += 2 + length
        raise ValueError("corrupt JPEG: no frame header")
    raise ValueError("not a JPEG or PNG")


def held(path):
    """Whether this process is the one SIZES_HOLD picks to hang."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def forever():
    while True:
        time.sleep(3600)


def main():
    long_line = "x" * 70000
    long_what = os.environ.get("SIZES_LONG")
    if os.environ.get("SIZES_IGNORE_EOF"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(float(os.environ.get("SIZES_START_DELAY", "0")))
    print("ready " + long_line if long_what == "ready" else "ready sizes", flush=True)
    hold = os.environ.get("SIZES_HOLD")
    for line in sys.stdin:
        path = line.rstrip("\n")
        if hold and held(hold):
            forever()
        if os.environ.get("SIZES_GARBAGE"):
            print("this is not an answer", flush=True)
            continue
        try:
            with open(path, "rb") as f:
                kind, width, height = dimensions(f.read())
        except (OSError, ValueError, struct.error) as e:
            print("error\t%s" % str(e).replace("\t", " ").replace("\n", " "), flush=True)
            continue
        if kind == "png" and long_what == "stderr":
            print(long_line, file=sys.stderr, flush=True)
        if kind == "png" and long_what == "answer":
            print(long_line + "\t1", flush=True)
            continue
        if kind == "png" and os.environ.get("SIZES_CLOSE_STDOUT"):
            sys.stdout.close()
            os.close(1)
            forever()
        for _ in range(2 if os.environ.get("SIZES_TWICE") else 1):
            print("%s-%dx%d\t1" % (kind, width, height), flush=True)
    if os.environ.get("SIZES_IGNORE_EOF"):
        forever()


if __name__ == "__main__":
    main()
