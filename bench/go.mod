module github.com/ssebridge/ssebridge/bench

go 1.26.0

require (
	github.com/launchdarkly/eventsource v1.11.0
	github.com/r3labs/sse/v2 v2.10.0
	github.com/ssebridge/ssebridge v0.0.0
	github.com/tmaxmax/go-sse v0.12.0
)

require (
	github.com/stretchr/testify v1.8.0 // indirect
	golang.org/x/net v0.60.0 // indirect
	gopkg.in/cenkalti/backoff.v1 v1.1.0 // indirect
)

replace github.com/ssebridge/ssebridge => ../
