/** Builds the Limit a route's `limit:` config asks for. */
import type { LimitConfig } from '../../config/types.js';
import { AdaptiveLimit } from './adaptive.js';
import { Aimd } from './aimd.js';
import { Gradient } from './gradient.js';
import { FixedLimit, type Limit } from './limit.js';
import { LittleLimit } from './little-limit.js';
import { Vegas } from './vegas.js';

export function createLimit(cfg: LimitConfig): Limit {
  switch (cfg.algorithm) {
    case 'fixed':
      return new FixedLimit(cfg.initial);
    case 'aimd':
      return new AdaptiveLimit(cfg, new Aimd(cfg.aimd));
    case 'gradient':
      return new AdaptiveLimit(cfg, new Gradient(cfg.gradient), cfg.gradient.longWindow);
    case 'vegas':
      return new AdaptiveLimit(cfg, new Vegas(cfg.vegas));
    case 'little':
      return new LittleLimit(cfg, cfg.little);
  }
}
