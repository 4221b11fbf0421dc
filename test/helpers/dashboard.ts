/**
 * The shipped Grafana dashboard (deploy/grafana/sluice-dashboard.json), read
 * as the tests need it: every panel's queries, and Grafana's variables filled
 * in as Grafana would.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Target {
  readonly expr: string;
  readonly legendFormat?: string;
}
export interface Panel {
  readonly type: string;
  readonly title: string;
  readonly repeat?: string;
  readonly targets?: readonly Target[];
  readonly fieldConfig?: { readonly defaults?: { readonly unit?: string; readonly custom?: { readonly axisLabel?: string } } };
}
export interface Dashboard {
  readonly uid: string;
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly { readonly name: string }[] };
}

const root = fileURLToPath(new URL('../../../', import.meta.url));
export const dashboardFile = join(root, 'deploy/grafana/sluice-dashboard.json');
export const dashboard = JSON.parse(readFileSync(dashboardFile, 'utf8')) as Dashboard;

/** Every query of every panel, with the panel it belongs to. */
export const dashboardTargets: readonly { readonly panel: Panel; readonly expr: string; readonly legend: string }[] = dashboard.panels.flatMap(
  (panel) => (panel.targets ?? []).map((t) => ({ panel, expr: t.expr, legend: t.legendFormat ?? '' })),
);

/** The query with Grafana's variables filled in: all instances, one route, a rate interval. */
export function fillVariables(expr: string, vars: { route: string; rateInterval: string }): string {
  return expr.replaceAll('$__rate_interval', vars.rateInterval).replaceAll('$instance', '.*').replaceAll('$route', vars.route);
}
