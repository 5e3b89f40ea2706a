package bridge

// The sink drivers a pipeline's sink block may name. Each registers itself
// (sinks.Register) and brings its own options type and checks: adding a
// broker is a package of its own and one line here.
import (
	_ "github.com/ssebridge/ssebridge/sinks/kafka"
	_ "github.com/ssebridge/ssebridge/sinks/nats"
)
