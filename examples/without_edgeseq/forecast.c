/* Forecast T2 from one window with the exported ONNX file and the onnxruntime C API alone, no edgeseq.
 *
 * Usage: forecast MODEL.onnx T F < window.txt
 *   window.txt: T*F whitespace-separated numbers, the raw readings of the manifest's "features" columns
 *   (F of them, in that order) for the last T rows (T = its "window"), row by row, oldest first.
 * Build: gcc forecast.c -I ORT/include -L ORT/lib -lonnxruntime -Wl,-rpath,ORT/lib -o forecast
 */
#include <stdio.h>
#include <stdlib.h>

#include "onnxruntime_c_api.h"

static const OrtApi *ort;

static void check(OrtStatus *status) {
  if (status != NULL) {
    fprintf(stderr, "onnxruntime: %s\n", ort->GetErrorMessage(status));
    ort->ReleaseStatus(status);
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MODEL.onnx T F < window.txt\n", argv[0]);
    return 2;
  }
  ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
  if (ort == NULL) {
    fprintf(stderr, "this libonnxruntime is older than the header (ORT_API_VERSION %d)\n", ORT_API_VERSION);
    return 1;
  }
  const int64_t shape[3] = {1, atoll(argv[2]), atoll(argv[3])};
  const size_t n = (size_t)(shape[1] * shape[2]);
  double *window = malloc(n * sizeof *window);
  for (size_t i = 0; i < n; i++) {
    if (window == NULL || scanf("%lf", &window[i]) != 1) {
      fprintf(stderr, "expected %zu numbers on stdin\n", n);
      return 1;
    }
  }

  OrtEnv *env;
  OrtSessionOptions *options;
  OrtSession *session;
  OrtMemoryInfo *memory;
  OrtValue *input = NULL, *output = NULL;
  check(ort->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "forecast", &env));
  check(ort->CreateSessionOptions(&options));
  check(ort->CreateSession(env, argv[1], options, &session));
  check(ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &memory));
  check(ort->CreateTensorWithDataAsOrtValue(memory, window, n * sizeof *window, shape, 3,
                                            ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, &input));
  const char *input_names[] = {"window"}, *output_names[] = {"forecast"};
  check(ort->Run(session, NULL, input_names, (const OrtValue *const *)&input, 1, output_names, 1, &output));

  OrtTensorTypeAndShapeInfo *info;
  ONNXTensorElementDataType type;
  check(ort->GetTensorTypeAndShape(output, &info));
  check(ort->GetTensorElementType(info, &type));
  ort->ReleaseTensorTypeAndShapeInfo(info);
  if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE) {
    fprintf(stderr, "output \"forecast\" is not float64 (element type %d)\n", (int)type);
    return 1;
  }
  double *forecast;
  check(ort->GetTensorMutableData(output, (void **)&forecast));
  printf("%.17g\n", forecast[0]); /* T2 in deg C, the manifest's "horizon" rows after the window's last row */

  ort->ReleaseValue(output);
  ort->ReleaseValue(input);
  ort->ReleaseMemoryInfo(memory);
  ort->ReleaseSession(session);
  ort->ReleaseSessionOptions(options);
  ort->ReleaseEnv(env);
  free(window);
  return 0;
}
