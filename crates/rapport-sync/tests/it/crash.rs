// crash tests: next
