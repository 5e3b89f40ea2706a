module github.com/ssebridge/ssebridge/bench

go 1.26.0

require github.com/ssebridge/ssebridge v0.0.0

replace github.com/ssebridge/ssebridge => ../
