# Sluice container image. test/docker.test.ts runs the same steps outside
# Docker (production install in a clean copy, start, /healthz), so keep every
# step here a plain COPY, RUN, ENV or WORKDIR.
#
#   docker build -t sluice .
#   docker run --init --stop-timeout 40 -p 8080:8080 \
#     -v "$PWD/my-policy.yaml:/etc/sluice/config.yaml:ro" sluice
#   docker run --rm -v "$PWD/my-policy.yaml:/p.yaml:ro" sluice validate /p.yaml
#
# Signals: sluice handles SIGTERM/SIGINT (graceful drain) and SIGHUP (reload)
# itself, so it works as PID 1; `--init` (tini) is still recommended and
# harmless. With `workers: N` (> 1) PID 1 is the primary: it forks the N
# workers, drains and reloads them itself, and the container's CPU must be
# N cores' worth; `workers: auto` counts the cores the container can be
# scheduled on (os.availableParallelism), not a --cpus quota, so set a
# number when the container has a CPU limit. Docker's default stop timeout is 10 s: give it at least
# shutdown.readinessGraceMs + shutdown.drainTimeoutMs + a few seconds
# (--stop-timeout / compose stop_grace_period), or the drain gets SIGKILLed.

# Stage 1: compile TypeScript with the dev dependencies.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.base.json ./
COPY src ./src
RUN npm run build

# Stage 2: production dependencies and dist/ only.
FROM node:24-slim
ENV NODE_ENV=production \
    SLUICE_CONFIG=/etc/sluice/config.yaml \
    SLUICE_HEALTHCHECK_URL=http://127.0.0.1:9901/healthz
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
# The reference policy as a placeholder: mount your own over it (a directory
# mount of /etc/sluice lets a ConfigMap update reach the file; then reload).
COPY config.example.yaml /etc/sluice/config.yaml
# Proxy and admin ports of the default config. The admin listener binds
# 127.0.0.1 unless the config says admin.host: 0.0.0.0 (needed for probes
# from outside the container, e.g. Kubernetes httpGet probes).
EXPOSE 8080 9901
# The image's `node` user, by number so Kubernetes runAsNonRoot can verify it.
# Files stay owned by root: the process cannot modify its own code or config.
USER 1000:1000
# Runs inside the container, so the loopback admin listener is reachable.
# Set SLUICE_HEALTHCHECK_URL when your config moves the admin listener.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.SLUICE_HEALTHCHECK_URL,{signal:AbortSignal.timeout(2000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/cli.js"]
