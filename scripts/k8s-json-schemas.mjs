#!/usr/bin/env node
// Turns the Kubernetes OpenAPI v2 document (api/openapi-spec/swagger.json of the k8s.io/kubernetes module) and
// CustomResourceDefinition files into the strict, stand-alone JSON schemas kubeconform reads, offline:
//
//   <out>/<kind>-<group's first label>-<version>.json   e.g. deployment-apps-v1.json, service-v1.json
//       kubeconform -schema-location '<out>/{{ .ResourceKind }}{{ .KindSuffix }}.json'
//   <out>/<group>/<kind>_<version>.json                  e.g. monitoring.coreos.com/servicemonitor_v1.json
//       kubeconform -schema-location '<out>/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'
//
// What openapi2jsonschema --kubernetes --stand-alone --strict does, in one small file with no Python: every object
// schema that lists its properties gets `additionalProperties: false` (so a misspelt field fails), int-or-string
// and Quantity accept both forms, apiVersion and kind must be the resource's own. "Stand-alone" keeps the
// referenced definitions inside each file under `definitions` (refs stay `#/definitions/…`), which also handles
// the recursive ones (JSONSchemaProps) that inlining could not.
//
// usage: node scripts/k8s-json-schemas.mjs --swagger swagger.json --out DIR [crd.yaml …]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'

const QUANTITY = 'io.k8s.apimachinery.pkg.api.resource.Quantity'
const INT_OR_STRING = 'io.k8s.apimachinery.pkg.util.intstr.IntOrString'

function parseArgs (argv) {
  const args = { swagger: undefined, out: undefined, crds: [] }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--swagger') args.swagger = argv[++i]
    else if (arg === '--out') args.out = argv[++i]
    else args.crds.push(arg)
  }
  if (args.swagger === undefined || args.out === undefined) {
    console.error('usage: k8s-json-schemas.mjs --swagger swagger.json --out DIR [crd.yaml …]')
    process.exit(2)
  }
  return args
}

/** Deep-copies a schema, making every fixed-field object closed and both-form scalars explicit. */
function strict (schema, { crd }) {
  if (Array.isArray(schema)) return schema.map((item) => strict(item, { crd }))
  if (schema === null || typeof schema !== 'object') return schema
  const out = {}
  for (const [key, value] of Object.entries(schema)) {
    // Descend only into keywords that hold schemas; `properties` and `definitions` hold maps of schemas.
    if (key === 'properties' || key === 'definitions' || key === 'patternProperties') {
      out[key] = Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, strict(sub, { crd })]))
    } else if (['items', 'additionalProperties', 'not', 'allOf', 'anyOf', 'oneOf'].includes(key) && typeof value === 'object') {
      out[key] = strict(value, { crd })
    } else {
      out[key] = value
    }
  }
  if (out.format === 'int-or-string' || out['x-kubernetes-int-or-string'] === true) {
    delete out.type
    delete out.format
    out.oneOf = [{ type: 'string' }, { type: 'integer' }]
  }
  if (crd && out.nullable === true && typeof out.type === 'string') out.type = [out.type, 'null']
  const open = out['x-kubernetes-preserve-unknown-fields'] === true
  if (out.properties !== undefined && out.additionalProperties === undefined && !open) out.additionalProperties = false
  return out
}

/** Names of every definition `schema` reaches through `$ref`, transitively. */
function reachable (name, definitions, seen = new Set()) {
  if (seen.has(name)) return seen
  seen.add(name)
  const walk = (node) => {
    if (Array.isArray(node)) { node.forEach(walk); return }
    if (node === null || typeof node !== 'object') return
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') reachable(value.replace('#/definitions/', ''), definitions, seen)
      else walk(value)
    }
  }
  walk(definitions[name])
  return seen
}

function pinKind (schema, apiVersion, kind) {
  const properties = { ...schema.properties }
  properties.apiVersion = { ...properties.apiVersion, type: 'string', enum: [apiVersion] }
  properties.kind = { ...properties.kind, type: 'string', enum: [kind] }
  return { ...schema, properties }
}

function writeJson (path, value) {
  writeFileSync(path, JSON.stringify(value, null, 1) + '\n')
}

function convertSwagger (path, out) {
  const swagger = JSON.parse(readFileSync(path, 'utf8'))
  const definitions = {}
  for (const [name, schema] of Object.entries(swagger.definitions)) definitions[name] = strict(schema, { crd: false })
  definitions[QUANTITY] = { ...definitions[QUANTITY], type: undefined, oneOf: [{ type: 'string' }, { type: 'number' }] }
  definitions[INT_OR_STRING] = { ...definitions[INT_OR_STRING], type: undefined, format: undefined, oneOf: [{ type: 'string' }, { type: 'integer' }] }
  const written = new Map()
  for (const [name, schema] of Object.entries(swagger.definitions)) {
    for (const gvk of schema['x-kubernetes-group-version-kind'] ?? []) {
      const apiVersion = gvk.group === '' ? gvk.version : `${gvk.group}/${gvk.version}`
      const suffix = gvk.group === '' ? `-${gvk.version}` : `-${gvk.group.split('.')[0]}-${gvk.version}`
      const file = `${gvk.kind.toLowerCase()}${suffix}.json`
      // Two groups sharing a first label and a kind would share a file name; kubeconform could not tell them apart.
      if (written.has(file) && written.get(file) !== apiVersion) {
        if (gvk.group.endsWith('.k8s.io') || gvk.group === '') {
          throw new Error(`${file}: both ${written.get(file)} and ${apiVersion}`)
        }
        continue
      }
      if (written.has(file)) continue
      const own = {}
      for (const ref of reachable(name, definitions)) if (ref !== name) own[ref] = definitions[ref]
      writeJson(join(out, file), { ...pinKind(definitions[name], apiVersion, gvk.kind), definitions: own })
      written.set(file, apiVersion)
    }
  }
  return written.size
}

function convertCrds (paths, out) {
  let count = 0
  for (const path of paths) {
    for (const doc of parseAllDocuments(readFileSync(path, 'utf8'))) {
      const crd = doc.toJS()
      if (crd?.kind !== 'CustomResourceDefinition') continue
      const { group, names, versions } = crd.spec
      mkdirSync(join(out, group), { recursive: true })
      for (const version of versions) {
        const schema = version.schema?.openAPIV3Schema
        if (schema === undefined) continue
        const file = join(out, group, `${names.kind.toLowerCase()}_${version.name}.json`)
        writeJson(file, pinKind(strict(schema, { crd: true }), `${group}/${version.name}`, names.kind))
        count++
      }
    }
  }
  return count
}

const args = parseArgs(process.argv.slice(2))
mkdirSync(args.out, { recursive: true })
const core = convertSwagger(args.swagger, args.out)
const crds = convertCrds(args.crds, args.out)
console.log(`wrote ${core} Kubernetes and ${crds} CRD schemas to ${args.out}`)
