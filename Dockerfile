# Build: a static binary, no cgo, with the Go of the Makefile's GOTOOLCHAIN (a test
# checks they match).
FROM golang:1.27.3-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# Every package of the module; .dockerignore leaves out tests, docs and tools.
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/valkey-webhook ./cmd/valkey-webhook

# Run: distroless static, as the nonroot user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/valkey-webhook /valkey-webhook
USER 65532:65532
ENTRYPOINT ["/valkey-webhook"]
CMD ["serve"]
