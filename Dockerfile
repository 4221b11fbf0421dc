# Sluice: multi-stage build. Stage 1 compiles TypeScript with dev deps;
# stage 2 carries only production deps and dist/.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.base.json ./
COPY src ./src
RUN npm run build

FROM node:24-slim
ENV NODE_ENV=production SLUICE_CONFIG=/etc/sluice/config.yaml
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config.example.yaml /etc/sluice/config.yaml
# Proxy and admin ports (see config.example.yaml). The admin listener binds
# 127.0.0.1 by default; set admin.host: 0.0.0.0 in your config to expose it.
EXPOSE 8080 9901
USER node
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9901/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Run with `docker run --init` (or tini) so SIGTERM reaches node and zombies are reaped.
ENTRYPOINT ["node", "dist/cli.js"]
