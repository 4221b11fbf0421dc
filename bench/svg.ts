/**
 * Line charts as standalone SVG text, for bench/REPORT.md: time on x, up to
 * two y axes (left for counts, right e.g. for milliseconds), a legend and
 * optional vertical markers (e.g. "capacity halves"). No dependencies.
 */

export interface Series {
  readonly name: string;
  /** [x, y] points; y null = gap. */
  readonly points: readonly (readonly [number, number | null])[];
  readonly axis?: 'left' | 'right';
  readonly color?: string;
  /** Draw dashed (e.g. a reference level). */
  readonly dashed?: boolean;
}

export interface ChartSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly leftLabel: string;
  readonly rightLabel?: string;
  readonly series: readonly Series[];
  readonly markers?: readonly { readonly x: number; readonly label: string }[];
  readonly width?: number;
  readonly height?: number;
}

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A "nice" step (1, 2 or 5 x 10^n) giving about `ticks` ticks over [0, max]. */
function niceStep(max: number, ticks: number): number {
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const n = raw / mag;
  return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
}

function fmt(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 1000) return `${Math.round(v / 100) / 10}k`;
  return String(Math.round(v * 100) / 100);
}

interface Axis {
  readonly max: number;
  readonly step: number;
}

function axisFor(values: number[]): Axis {
  // 5% headroom, so a line at the maximum is not drawn on the frame.
  const top = Math.max(1e-9, ...values) * 1.05;
  const step = niceStep(top, 5);
  return { max: Math.ceil(top / step) * step, step };
}

export function lineChart(spec: ChartSpec): string {
  const W = spec.width ?? 880;
  const H = spec.height ?? 360;
  const m = { left: 64, right: spec.rightLabel ? 64 : 20, top: 40, bottom: 72 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;

  const xs = spec.series.flatMap((s) => s.points.map((p) => p[0]));
  const xMin = Math.min(0, ...xs);
  const xMax = Math.max(xMin + 1, ...xs);
  const ys = (axis: 'left' | 'right'): number[] =>
    spec.series.filter((s) => (s.axis ?? 'left') === axis).flatMap((s) => s.points.map((p) => p[1]).filter((y): y is number => y !== null && Number.isFinite(y)));
  const left = axisFor(ys('left'));
  const right = axisFor(ys('right'));
  const X = (x: number): number => m.left + ((x - xMin) / (xMax - xMin)) * pw;
  const Y = (y: number, a: Axis): number => m.top + ph - (Math.min(y, a.max) / a.max) * ph;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(spec.title)}</text>`,
  );
  // Grid and left axis ticks.
  for (let v = 0; v <= left.max + 1e-9; v += left.step) {
    const y = Y(v, left);
    out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 6}" y="${y + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  if (spec.rightLabel) {
    for (let v = 0; v <= right.max + 1e-9; v += right.step) {
      out.push(`<text x="${m.left + pw + 6}" y="${Y(v, right) + 4}">${fmt(v)}</text>`);
    }
  }
  const xStep = niceStep(xMax - xMin, 10);
  for (let v = Math.ceil(xMin / xStep) * xStep; v <= xMax + 1e-9; v += xStep) {
    out.push(`<text x="${X(v)}" y="${m.top + ph + 16}" text-anchor="middle">${fmt(v)}</text>`);
  }
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
    `<text x="${m.left + pw / 2}" y="${m.top + ph + 34}" text-anchor="middle">${esc(spec.xLabel)}</text>`,
    `<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(spec.leftLabel)}</text>`,
  );
  if (spec.rightLabel) {
    out.push(`<text transform="translate(${W - 12} ${m.top + ph / 2}) rotate(90)" text-anchor="middle">${esc(spec.rightLabel)}</text>`);
  }
  for (const mk of spec.markers ?? []) {
    const x = X(mk.x);
    out.push(
      `<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + ph}" stroke="#444" stroke-dasharray="4 3"/>`,
      `<text x="${x + 4}" y="${m.top + 12}" fill="#444">${esc(mk.label)}</text>`,
    );
  }
  // Series: one path each, broken at null points.
  spec.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const a = (s.axis ?? 'left') === 'left' ? left : right;
    let d = '';
    let pen = false;
    for (const [x, y] of s.points) {
      if (y === null || !Number.isFinite(y)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${X(x).toFixed(1)} ${Y(y, a).toFixed(1)} `;
      pen = true;
    }
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    if (d) out.push(`<path d="${d.trim()}" fill="none" stroke="${color}" stroke-width="1.6"${dash}/>`);
  });
  // Legend, below the x label.
  let lx = m.left;
  const ly = H - 14;
  spec.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const label = `${s.name}${spec.rightLabel ? ((s.axis ?? 'left') === 'left' ? ' (left)' : ' (right)') : ''}`;
    out.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 18}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<text x="${lx + 22}" y="${ly}">${esc(label)}</text>`,
    );
    lx += 30 + label.length * 6.6;
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
