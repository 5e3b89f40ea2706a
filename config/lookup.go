package config

// Pipeline returns the pipeline called name, or nil.
func (c *Config) Pipeline(name string) *Pipeline {
	for i := range c.Pipelines {
		if c.Pipelines[i].Name == name {
			return &c.Pipelines[i]
		}
	}
	return nil
}

// Stream returns the stream served at path, or nil.
func (c *Config) Stream(path string) *Stream {
	for i := range c.Streams {
		if c.Streams[i].Path == path {
			return &c.Streams[i]
		}
	}
	return nil
}
