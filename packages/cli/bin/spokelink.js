#!/usr/bin/env node
// A committed shim so pnpm can link the bin at install time, before dist/ exists.
import '../dist/bin.js'
