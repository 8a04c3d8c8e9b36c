# fraud-sql: build with the same install step as CI (npm ci, which builds dist/
# through the prepare script), then keep only the runtime in a small image that
# runs as the unprivileged "node" user.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm ci --no-audit --no-fund
RUN npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY queries ./queries
USER node
EXPOSE 8787 8788
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["run"]
