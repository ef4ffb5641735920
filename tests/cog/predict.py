"""A tiny CPU predictor for the Cog backend's tests, served by a real Cog
server (cog/coglet from PyPI, no Docker). It paints a small PNG in the asked
shape (its colour from the seed), prints tqdm-style progress lines while it
"draws", fails like SDXL's safety checker for prompts containing "[unsafe]",
and records in $COG_TEST_LOG what happened to each run: started, finished,
or cancelled (coglet stops a cancelled run by raising inside predict)."""

import os
import struct
import time
import zlib

from cog import BasePredictor, Input, Path


def record(event, prompt):
    log = os.environ.get("COG_TEST_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"{event}\t{prompt}\n")


def png(width, height, rgb):
    row = b"\x00" + bytes(rgb) * width
    raw = row * height

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


class Predictor(BasePredictor):
    def setup(self):
        self.steps = int(os.environ.get("COG_TEST_STEPS", "10"))
        self.step_ms = int(os.environ.get("COG_TEST_STEP_MS", "100"))

    # Every input the app sends is accepted (without `cog build` nothing is
    # validated): the owner's [model.input] extras land in **extra.
    def predict(
        self,
        prompt: str = Input(default=""),
        width: int = 1024,
        height: int = 1024,
        seed: int = 0,
        negative_prompt: str = "",
        num_outputs: int = 1,
        scheduler: str = "",
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        prompt_strength: float = 0.8,
        refine: str = "",
        high_noise_frac: float = 0.8,
        apply_watermark: bool = True,
        lora_scale: float = 0.6,
    ) -> list[Path]:
        record("started", prompt)
        try:
            if "[unsafe]" in prompt:
                raise Exception("NSFW content detected. Try running it again, or try a different prompt.")
            for step in range(self.steps):
                time.sleep(self.step_ms / 1000)
                percent = (step + 1) * 100 // self.steps
                bar = "#" * (percent // 10)
                print(f"{percent:3d}%|{bar:<10}| {step + 1}/{self.steps} [00:01<00:00,  9.00it/s]", flush=True)
        except BaseException as stopped:
            if "NSFW" not in str(stopped):
                record("cancelled", prompt)
            raise
        out = f"/tmp/cog-test-{os.getpid()}-{seed}.png"
        with open(out, "wb") as image:
            image.write(png(max(8, width // 16), max(8, height // 16), (seed % 256, 90, 160)))
        record("finished", prompt)
        return [Path(out)]
