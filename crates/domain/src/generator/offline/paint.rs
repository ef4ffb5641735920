//! The painter's brushes: colours, the palettes of the times of day, and a
//! floating-point canvas whose helpers take fractions of its size, so a picture
//! looks the same at every size.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub(super) type Rgb = [f32; 3];

pub(super) fn hex(value: u32) -> Rgb {
    [
        ((value >> 16) & 0xff) as f32 / 255.0,
        ((value >> 8) & 0xff) as f32 / 255.0,
        (value & 0xff) as f32 / 255.0,
    ]
}

pub(super) fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    let t = t.clamp(0.0, 1.0);
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

pub(super) fn smoothstep(t: f32) -> f32 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Colours of one time of day.
#[derive(Debug, Clone, Copy)]
pub(super) struct Palette {
    pub(super) sky_top: Rgb,
    pub(super) sky_mid: Rgb,
    pub(super) horizon: Rgb,
    pub(super) sun: Rgb,
    /// Far, middle and near land, before haze.
    pub(super) land: [Rgb; 3],
    pub(super) window_light: Rgb,
    pub(super) stars: bool,
    pub(super) sun_stripes: bool,
    pub(super) rain: bool,
    /// How much of the sun shows (0 under heavy cloud).
    pub(super) sun_strength: f32,
}

impl Palette {
    pub(super) fn sunset() -> Self {
        Self {
            sky_top: hex(0x2b1e4a),
            sky_mid: hex(0xb24a7a),
            horizon: hex(0xffb36b),
            sun: hex(0xffe6b0),
            land: [hex(0x8a4f7d), hex(0x5a3563), hex(0x2a1a3a)],
            window_light: hex(0xffd27f),
            stars: false,
            sun_stripes: true,
            rain: false,
            sun_strength: 1.0,
        }
    }
    pub(super) fn dusk() -> Self {
        Self {
            sky_top: hex(0x1d2b53),
            sky_mid: hex(0x7e5a9b),
            horizon: hex(0xf7a6a1),
            sun: hex(0xffd9c4),
            land: [hex(0x6b5b95), hex(0x433a6b), hex(0x211c38)],
            window_light: hex(0xffcf86),
            stars: true,
            sun_stripes: false,
            rain: false,
            sun_strength: 0.9,
        }
    }
    pub(super) fn golden() -> Self {
        Self {
            sky_top: hex(0x3a6ea5),
            sky_mid: hex(0xf2b880),
            horizon: hex(0xffe0a3),
            sun: hex(0xfff4d6),
            land: [hex(0xc07a5a), hex(0x8c4f47), hex(0x3f2530)],
            window_light: hex(0xffe2a0),
            stars: false,
            sun_stripes: false,
            rain: false,
            sun_strength: 1.0,
        }
    }
    pub(super) fn night() -> Self {
        Self {
            sky_top: hex(0x070b1f),
            sky_mid: hex(0x16224a),
            horizon: hex(0x41457c),
            sun: hex(0xf5f1d8),
            land: [hex(0x262a52), hex(0x171c3a), hex(0x0a0d20)],
            window_light: hex(0xffc66e),
            stars: true,
            sun_stripes: false,
            rain: false,
            sun_strength: 0.8,
        }
    }
    pub(super) fn morning() -> Self {
        Self {
            sky_top: hex(0x7fb8e0),
            sky_mid: hex(0xc2e0ef),
            horizon: hex(0xffd9b8),
            sun: hex(0xfff8e6),
            land: [hex(0x93bfae), hex(0x5e8c7e), hex(0x2f5450)],
            window_light: hex(0xfff1c9),
            stars: false,
            sun_stripes: false,
            rain: false,
            sun_strength: 1.0,
        }
    }
    pub(super) fn rain() -> Self {
        Self {
            sky_top: hex(0x343b4d),
            sky_mid: hex(0x5d6680),
            horizon: hex(0x9aa2b6),
            sun: hex(0xdfe3ee),
            land: [hex(0x58627a), hex(0x3d4559), hex(0x1f2533)],
            window_light: hex(0xffd58a),
            stars: false,
            sun_stripes: false,
            rain: true,
            sun_strength: 0.25,
        }
    }
}

/// A floating-point RGB canvas; coordinates in the paint helpers are fractions of
/// the canvas so a picture looks the same at every size.
pub(super) struct Canvas {
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) px: Vec<Rgb>,
    pub(super) palette: Palette,
}

impl Canvas {
    pub(super) fn new(w: usize, h: usize, palette: Palette) -> Self {
        Self {
            w,
            h,
            px: vec![[0.0; 3]; w * h],
            palette,
        }
    }

    pub(super) fn blend(&mut self, x: usize, y: usize, color: Rgb, alpha: f32) {
        if x < self.w && y < self.h {
            let p = &mut self.px[y * self.w + x];
            *p = mix(*p, color, alpha);
        }
    }

    pub(super) fn add(&mut self, x: usize, y: usize, color: Rgb, amount: f32) {
        if x < self.w && y < self.h {
            let p = &mut self.px[y * self.w + x];
            for c in 0..3 {
                p[c] += color[c] * amount;
            }
        }
    }

    pub(super) fn sky_at(&self, fy: f32, horizon: f32) -> Rgb {
        let t = fy / horizon;
        if t < 0.55 {
            mix(
                self.palette.sky_top,
                self.palette.sky_mid,
                smoothstep(t / 0.55),
            )
        } else {
            mix(
                self.palette.sky_mid,
                self.palette.horizon,
                smoothstep((t - 0.55) / 0.45),
            )
        }
    }

    pub(super) fn sky(&mut self, horizon: f32) {
        for y in 0..self.h {
            let color = self.sky_at(y as f32 / self.h as f32, horizon);
            for x in 0..self.w {
                self.px[y * self.w + x] = color;
            }
        }
    }

    pub(super) fn stars(&mut self, rng: &mut ChaCha8Rng) {
        let count = (self.w * self.h) / 900;
        for _ in 0..count {
            let x = rng.random_range(0..self.w);
            let y = rng.random_range(0..self.h * 11 / 20);
            let brightness = rng.random_range(0.25f32..0.9) * (1.0 - y as f32 / self.h as f32);
            let white = hex(0xfff8e8);
            self.blend(x, y, white, brightness);
            if brightness > 0.6 {
                for (dx, dy) in [(1, 0), (0, 1)] {
                    self.blend(x + dx, y + dy, white, brightness * 0.4);
                    if x >= dx && y >= dy {
                        self.blend(x - dx, y - dy, white, brightness * 0.4);
                    }
                }
            }
        }
    }

    pub(super) fn sun(&mut self, cx: f32, cy: f32, r: f32) {
        let (w, h) = (self.w as f32, self.h as f32);
        let strength = self.palette.sun_strength;
        let sun = self.palette.sun;
        let scale = w.min(h);
        let spread = 2.0 * (r * 2.2).powi(2);
        let peak = 0.32 * strength;
        // Past this distance the glow adds less than a thousandth of a level
        // (a quarter of one 8-bit step): only the box around it is painted.
        let reach = if peak > 0.001 {
            (spread * (peak / 0.001).ln()).sqrt().max(r + 1.0 / scale)
        } else {
            r + 1.0 / scale
        };
        let x0 = ((cx * w - reach * scale).floor().max(0.0)) as usize;
        let x1 = ((cx * w + reach * scale).ceil().clamp(0.0, w)) as usize;
        let y0 = ((cy * h - reach * scale).floor().max(0.0)) as usize;
        let y1 = ((cy * h + reach * scale).ceil().clamp(0.0, h)) as usize;
        // The glow is a Gaussian: its value is a row factor times a column
        // factor, so no exponential per pixel.
        let column: Vec<f32> = (x0..x1)
            .map(|x| {
                let dx = (x as f32 - cx * w) / scale;
                (-(dx * dx) / spread).exp()
            })
            .collect();
        let disc = (r + 1.0 / scale) * (r + 1.0 / scale);
        for y in y0..y1 {
            let dy = (y as f32 - cy * h) / scale;
            let row = (-(dy * dy) / spread).exp() * peak;
            for (x, across) in (x0..x1).zip(&column) {
                let dx = (x as f32 - cx * w) / scale;
                let d2 = dx * dx + dy * dy;
                if d2 > reach * reach {
                    continue;
                }
                // Wide soft glow, then the disc with an anti-aliased edge.
                self.add(x, y, sun, row * across);
                if d2 >= disc {
                    continue;
                }
                let d = d2.sqrt();
                let edge = ((r - d) * scale).clamp(0.0, 1.0);
                if edge > 0.0 {
                    let mut alpha = edge * (0.35 + 0.65 * strength);
                    if self.palette.sun_stripes {
                        // Retro bands across the lower half of the sun.
                        let v = (dy / r + 1.0) / 2.0;
                        if v > 0.55 {
                            let band = ((v - 0.55) * 22.0).fract();
                            if band < 0.18 + (v - 0.55) * 0.9 {
                                alpha *= 0.0;
                            }
                        }
                    }
                    let shade = mix(sun, self.palette.horizon, (dy / r + 1.0) * 0.25);
                    self.blend(x, y, shade, alpha);
                }
            }
        }
    }

    pub(super) fn clouds(&mut self, rng: &mut ChaCha8Rng, horizon: f32) {
        let (w, h) = (self.w as f32, self.h as f32);
        let tint = mix(self.palette.horizon, hex(0xffffff), 0.35);
        let shadow = mix(self.palette.sky_mid, self.palette.sky_top, 0.3);
        let count = if self.palette.rain {
            9
        } else {
            rng.random_range(3..6)
        };
        // (1 - d²/2.56)^1.6, tabulated: a power per pixel was a tenth of
        // the painting's time.
        let falloff: Vec<f32> = (0..=PUFF_STEPS)
            .map(|i| (1.0 - i as f32 / PUFF_STEPS as f32).powf(1.6) * 0.55)
            .collect();
        for _ in 0..count {
            let cx = rng.random_range(-0.1f32..1.1);
            let cy = rng.random_range(0.08f32..horizon - 0.12);
            let length = rng.random_range(0.18f32..0.4);
            let puffs = rng.random_range(5..9);
            for i in 0..puffs {
                let px = cx + (i as f32 / puffs as f32 - 0.5) * length;
                let py = cy + rng.random_range(-0.012f32..0.012);
                let rx = rng.random_range(0.05f32..0.1);
                let ry = rx * rng.random_range(0.28f32..0.42);
                let (x0, x1) = (((px - rx * 1.6) * w).max(0.0), ((px + rx * 1.6) * w).min(w));
                let (y0, y1) = (((py - ry * 1.6) * h).max(0.0), ((py + ry * 1.6) * h).min(h));
                for y in y0 as usize..y1 as usize {
                    for x in x0 as usize..x1 as usize {
                        let dx = (x as f32 / w - px) / rx;
                        let dy = (y as f32 / h - py) / ry;
                        let d2 = dx * dx + dy * dy;
                        if d2 < 2.56 {
                            let alpha = puff_alpha(&falloff, d2);
                            // Lit from below by the low sun, darker on top.
                            let color = mix(tint, shadow, smoothstep(-dy * 0.5 + 0.5) * 0.6);
                            self.blend(x, y, color, alpha);
                        }
                    }
                }
            }
        }
    }

    /// A land silhouette: everything below `ridge(x)` takes `color`, darkening a
    /// little towards the bottom.
    pub(super) fn layer(&mut self, color: Rgb, ridge: impl Fn(f32) -> f32) {
        let (w, h) = (self.w as f32, self.h as f32);
        let deep = mix(color, hex(0x000000), 0.25);
        for x in 0..self.w {
            let top = ridge(x as f32 / w) * h;
            let start = top.max(0.0) as usize;
            for y in start..self.h {
                let coverage = (y as f32 + 1.0 - top).clamp(0.0, 1.0);
                let depth = (y as f32 - top) / (h - top).max(1.0);
                self.blend(x, y, mix(color, deep, depth), coverage);
            }
        }
    }

    /// Land colour with distance haze towards the horizon colour.
    pub(super) fn hazed(&self, index: usize, haze: f32) -> Rgb {
        mix(self.palette.land[index], self.palette.horizon, haze)
    }

    pub(super) fn hills(&mut self, rng: &mut ChaCha8Rng, horizon: f32) {
        for (i, haze) in [(0usize, 0.45f32), (1, 0.2), (2, 0.0)] {
            let base = horizon + i as f32 * 0.075;
            let amp = rng.random_range(0.03f32..0.07) * (1.0 + i as f32 * 0.3);
            let waves: Vec<(f32, f32, f32)> = (0..3)
                .map(|k| {
                    (
                        rng.random_range(1.0f32..3.5) * (k + 1) as f32,
                        rng.random_range(0.0f32..std::f32::consts::TAU),
                        1.0 / (k + 1) as f32,
                    )
                })
                .collect();
            let color = self.hazed(i, haze);
            self.layer(color, |x| {
                let s: f32 = waves
                    .iter()
                    .map(|(f, p, a)| a * (x * f * std::f32::consts::TAU / 2.0 + p).sin())
                    .sum();
                base - amp * (s * 0.5 + 0.6)
            });
        }
        self.power_line(rng, horizon);
    }

    /// Utility poles and sagging wires in the foreground: the lofi signature.
    pub(super) fn power_line(&mut self, rng: &mut ChaCha8Rng, horizon: f32) {
        let (w, h) = (self.w as f32, self.h as f32);
        let color = mix(self.palette.land[2], hex(0x000000), 0.35);
        let pole_x = rng.random_range(0.12f32..0.3);
        let spacing = rng.random_range(0.45f32..0.6);
        let top = horizon - rng.random_range(0.28f32..0.36);
        let thickness = (w * 0.008).max(1.0);
        let poles = [pole_x, pole_x + spacing];
        for &px in &poles {
            let x0 = (px * w - thickness / 2.0).max(0.0) as usize;
            for x in x0..(x0 + thickness as usize).min(self.w) {
                for y in (top * h) as usize..self.h {
                    self.blend(x, y, color, 1.0);
                }
            }
            // Cross arm.
            let arm_y = (top * h + thickness * 3.0) as usize;
            let half = (w * 0.045) as usize;
            let cx = (px * w) as usize;
            for x in cx.saturating_sub(half)..(cx + half).min(self.w) {
                for y in arm_y..arm_y + (thickness * 0.7).max(1.0) as usize {
                    self.blend(x, y, color, 1.0);
                }
            }
        }
        // Three wires between the poles and off both edges, drawn as catenary-ish sags.
        for k in 0..3 {
            let offset = (k as f32 - 1.0) * 0.04;
            let y_attach = top + thickness * 3.0 / h;
            let spans = [
                (-0.2f32, poles[0]),
                (poles[0], poles[1]),
                (poles[1], poles[1] + spacing),
            ];
            for (a, b) in spans {
                let sag = (b - a) * 0.12;
                for x in 0..self.w {
                    let fx = x as f32 / w;
                    if fx < a + offset || fx > b + offset {
                        continue;
                    }
                    let t = (fx - a - offset) / (b - a);
                    let y = (y_attach + sag * 4.0 * t * (1.0 - t)) * h;
                    let yi = y as usize;
                    let frac = y.fract();
                    self.blend(x, yi, color, 0.9 * (1.0 - frac));
                    self.blend(x, yi + 1, color, 0.9 * frac);
                }
            }
        }
    }

    pub(super) fn city(&mut self, rng: &mut ChaCha8Rng, horizon: f32) {
        let (w, h) = (self.w as f32, self.h as f32);
        // Two rows of buildings: a hazy far one and a darker near one with lit windows.
        for (row, haze) in [(0usize, 0.5f32), (2, 0.0)] {
            let color = self.hazed(row, haze);
            let mut x = -rng.random_range(0.0f32..0.05);
            let lit_chance = if self.palette.stars || self.palette.rain {
                0.45
            } else {
                0.12
            };
            while x < 1.0 {
                let bw = rng.random_range(0.05f32..0.13);
                let bh = if row == 0 {
                    rng.random_range(0.1f32..0.26)
                } else {
                    rng.random_range(0.14f32..0.38)
                };
                let base = if row == 0 {
                    horizon + 0.02
                } else {
                    horizon + 0.12
                };
                let top = base - bh;
                let (x0, x1) = ((x * w).max(0.0) as usize, ((x + bw) * w).min(w) as usize);
                for y in (top * h).max(0.0) as usize..self.h {
                    for px in x0..x1 {
                        self.blend(px, y, color, 1.0);
                    }
                }
                if row == 2 {
                    // A grid of windows, some of them lit.
                    let cell = (w * 0.018).max(3.0) as usize;
                    let mut wy = (top * h) as usize + cell;
                    while wy + cell < (base * h) as usize {
                        let mut wx = x0 + cell / 2;
                        while wx + cell < x1 {
                            if rng.random::<f32>() < lit_chance {
                                for yy in wy..wy + cell / 2 {
                                    for xx in wx..wx + cell / 2 {
                                        self.blend(xx, yy, self.palette.window_light, 0.85);
                                    }
                                }
                            }
                            wx += cell;
                        }
                        wy += cell;
                    }
                }
                x += bw + rng.random_range(0.0f32..0.015);
            }
        }
        // Street level.
        let street = mix(self.palette.land[2], hex(0x000000), 0.3);
        self.layer(street, |_| horizon + 0.12);
        self.power_line(rng, horizon + 0.1);
    }

    pub(super) fn sea(&mut self, rng: &mut ChaCha8Rng, horizon: f32, sun_x: f32) {
        let (w, h) = (self.w as f32, self.h as f32);
        // A distant island on the horizon.
        let island_x = rng.random_range(0.1f32..0.9);
        let island_w = rng.random_range(0.15f32..0.3);
        let island_h = rng.random_range(0.03f32..0.06);
        let island = self.hazed(0, 0.35);
        self.layer(island, |x| {
            let t = (x - island_x) / island_w;
            if t.abs() < 1.0 {
                horizon - island_h * (1.0 - t * t).sqrt()
            } else {
                2.0
            }
        });
        // Water: the sky mirrored and deepened, with glints under the sun.
        let deep = mix(self.palette.land[1], self.palette.sky_top, 0.4);
        let start = (horizon * h) as usize;
        for y in start..self.h {
            let depth = (y as f32 / h - horizon) / (1.0 - horizon);
            let mirrored = (2.0 * horizon - y as f32 / h).max(0.0);
            let sky = self.sky_at(mirrored, horizon);
            let color = mix(sky, deep, 0.35 + depth * 0.5);
            for x in 0..self.w {
                self.px[y * self.w + x] = color;
            }
        }
        // Horizontal shimmer, densest in a column below the sun.
        let glints = (self.w * self.h) / 260;
        for _ in 0..glints {
            let depth: f32 = rng.random::<f32>().powf(1.4);
            let y = ((horizon + depth * (1.0 - horizon)) * h) as usize;
            let spread = 0.05 + depth * 0.2;
            let x = (sun_x + rng.random_range(-spread..spread)) * w;
            let len = (w * rng.random_range(0.004f32..0.02) * (1.0 + depth * 2.0)) as usize;
            let alpha = rng.random_range(0.2f32..0.7) * self.palette.sun_strength;
            for dx in 0..len.max(1) {
                self.blend(x as usize + dx, y, self.palette.sun, alpha);
            }
        }
        // Sand in the foreground.
        let sand = self.hazed(0, 0.5);
        let shore_amp = rng.random_range(0.01f32..0.03);
        let phase = rng.random_range(0.0f32..std::f32::consts::TAU);
        self.layer(sand, |x| 0.88 - shore_amp * (x * 5.0 + phase).sin());
    }

    pub(super) fn rain(&mut self, rng: &mut ChaCha8Rng) {
        let (w, h) = (self.w as f32, self.h as f32);
        let color = hex(0xdfe6f5);
        let drops = (self.w * self.h) / 500;
        for _ in 0..drops {
            let x0 = rng.random_range(0.0f32..1.1) * w;
            let y0 = rng.random_range(-0.1f32..1.0) * h;
            let len = rng.random_range(0.02f32..0.05) * h;
            let alpha = rng.random_range(0.08f32..0.22);
            let steps = len as usize;
            for s in 0..steps {
                let x = x0 - s as f32 * 0.25;
                let y = y0 + s as f32;
                if x >= 0.0 && y >= 0.0 {
                    self.blend(x as usize, y as usize, color, alpha);
                }
            }
        }
    }

    /// Vignette and film grain, then 8-bit output.
    pub(super) fn finish(self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let mut out = vec![0u8; self.w * self.h * 3];
        let (w, h) = (self.w as f32, self.h as f32);
        let vignette_x: Vec<f32> = (0..self.w)
            .map(|x| {
                let x = x as f32 / w - 0.5;
                x * x
            })
            .collect();
        let mut noise = vec![0u32; self.w];
        for (y, (row, bytes)) in self
            .px
            .chunks_exact(self.w)
            .zip(out.chunks_exact_mut(self.w * 3))
            .enumerate()
        {
            let fy = y as f32 / h - 0.5;
            let fy2 = fy * fy;
            // The row's grain in one draw from the generator.
            rng.fill(&mut noise[..]);
            for (((p, rgb), x2), n) in row
                .iter()
                .zip(bytes.chunks_exact_mut(3))
                .zip(&vignette_x)
                .zip(&noise)
            {
                let vignette = 1.0 - 0.45 * (x2 + fy2);
                let grain = ((n >> 8) as f32 * (1.0 / 16_777_216.0) - 0.5) * 0.045;
                for (c, byte) in p.iter().zip(rgb) {
                    let v = (c * vignette + grain).clamp(0.0, 1.0);
                    *byte = (v * 255.0 + 0.5) as u8;
                }
            }
        }
        out
    }
}

/// Steps of the clouds' tabulated falloff.
const PUFF_STEPS: usize = 1024;

/// A cloud puff's opacity at `d2` (the squared distance in its radii, below
/// 2.56), linearly between the table's steps.
fn puff_alpha(falloff: &[f32], d2: f32) -> f32 {
    let at = d2 / 2.56 * PUFF_STEPS as f32;
    let i = (at as usize).min(PUFF_STEPS - 1);
    let t = at - i as f32;
    falloff[i] + (falloff[i + 1] - falloff[i]) * t
}
