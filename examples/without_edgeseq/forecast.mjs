// Forecast T2 from the last rows of a CSV with the exported ONNX file alone: onnxruntime-node, no edgeseq.
// Usage: node forecast.mjs MODEL.onnx FILE.csv [--all]   (--all: the forecast of every window, one a line)
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';

const [modelPath, csvPath, all] = process.argv.slice(2);
// onnxruntime-node does not expose the model's metadata, so read the manifest beside it:
// sensor_lstm.onnx and its variants (sensor_lstm.dynamic-int8.onnx) share sensor_lstm.json.
const manifestPath = join(dirname(modelPath), basename(modelPath).split('.')[0] + '.json');
const { features, window: T } = JSON.parse(readFileSync(manifestPath, 'utf8'));

// A plain CSV (no commas inside fields); columns are found by name in the header.
const unquote = (field) => field.trim().replace(/^"(.*)"$/, '$1');
const [header, ...lines] = readFileSync(csvPath, 'utf8').trim().split(/\r?\n/);
const names = header.split(',').map(unquote);
const columns = features.map((name) => names.indexOf(name));
if (columns.includes(-1)) throw new Error(`${csvPath} lacks a column of ${features.join(', ')}`);
const rows = lines.map((line) => line.split(',')).map((cells) => columns.map((i) => Number(unquote(cells[i]))));
if (rows.length < T) throw new Error(`${csvPath} has ${rows.length} rows; the model needs ${T}`);

const session = await ort.InferenceSession.create(modelPath);
async function predict(end) { // the window of rows [end - T, end): raw readings, oldest first
  const data = Float64Array.from(rows.slice(end - T, end).flat());
  const { forecast } = await session.run({ window: new ort.Tensor('float64', data, [1, T, features.length]) });
  return forecast.data[0]; // T2 in deg C, horizon rows after the window's last row
}

for (let end = all === '--all' ? T : rows.length; end <= rows.length; end++) console.log(await predict(end));
