package config

// The sink drivers whose blocks the tests write; the program registers
// them the same way, by importing them (bridge/drivers.go).
import (
	_ "github.com/ssebridge/ssebridge/sinks/kafka"
)
