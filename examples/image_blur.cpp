// image_blur.cpp — blur a folder of photos in parallel: ProcessPoolExecutor.map over file names.
//
// Mirrors: "Python Multiprocessing: Unleashing Parallelism for CPU-Bound Tasks" (seed
//          000_034840ab600c0838.txt), "5. Real-World Example: Image Processing":
//          executor.map(download_image, image_urls) saves each photo to a file and returns its
//          name, then executor.map(process_image, image_names) opens each file, applies
//          ImageFilter.GaussianBlur(15) and saves it as processed_<name>; the run is timed.
//
// What to notice
//  - Nothing is downloaded: download_image draws a 640x480 "photo" (sky gradient, sun, hills,
//    furrows, grain) and saves it as a JPEG. The files live in a temporary directory that
//    TempDir removes when run() returns or throws (main catches, so the stack unwinds).
//  - The tasks take and return file names (std::string), as in the tutorial: the pixels never
//    cross a process boundary, each worker reads and writes its own files.
//  - Decoding and encoding are stb_image / stb_image_write (Debian's libstb-dev). stb has no
//    blur filter (stb_image_resize only resamples), so gaussian_blur is written out below,
//    the way Pillow computes GaussianBlur(15): three box blurs with sigma 15 in all.
//  - executor.map returns a lazy range in input order; iterating it waits for each result. The
//    tutorial's process_image catches its own errors and prints them; here an exception thrown
//    in a worker (a file that does not decode) is rethrown by the step that reaches it, as
//    itself, with its message, and the parent reports it.
//  - The same blur is timed three ways: a serial loop, the executor, and the one-shot
//    mproc::map, whose workers are forked at the call, so a capturing lambda and images
//    already decoded in memory just work (only the blurred images travel back).
//  - A photo is about 20 ms of decoding, blurring and encoding, far more than handing it to a
//    worker costs, so the speed-up is bounded by the free cores: up to cpu_count() times on
//    an idle machine, less (or none) on a busy one.
//  - Checked: every output decodes, has the input's size, differs from it and is smoother;
//    the three runs produce the same bytes. Timings are printed, never checked.
#include <mproc/mproc.hpp>

#include <stb_image.h>
#include <stb_image_write.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace fs = std::filesystem;

constexpr int kWidth = 640, kHeight = 480, kChannels = 3, kPhotos = 12;
constexpr double kRadius = 15.0;  // Pillow's GaussianBlur(15): the standard deviation, in pixels

// An RGB image, 8 bits per channel, rows top to bottom. The serialize member lets it travel
// back from the one-shot map's workers.
struct Image {
  int width = 0, height = 0;
  std::vector<unsigned char> pixels;  // width * height * kChannels
  template <class A>
  void serialize(A& a) {
    a(width, height, pixels);
  }
};

// A fresh directory under the system's temporary directory, removed with its contents when the
// object goes out of scope. Only the process that made it removes it: a worker forked from
// main holds a copy of this object too, and must not delete the directory under the parent.
class TempDir {
 public:
  TempDir() {
    // Not "mproc*": the test suite's leak check watches /tmp/mproc* while this example runs.
    std::string pattern = (fs::temp_directory_path() / "image-blur-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    if (::getpid() != owner_) return;
    std::error_code ignored;  // a destructor never throws
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  pid_t owner_ = ::getpid();
};

std::vector<unsigned char> read_file(const std::string& name) {
  std::ifstream in(name, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + name);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& name, const std::vector<unsigned char>& bytes) {
  std::ofstream out(name, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + name);
}

// Image.open: decodes a PNG/JPEG/... file. Throws when the file is not an image.
Image load_image(const std::string& name) {
  int w = 0, h = 0, channels_in_file = 0;
  unsigned char* data = stbi_load(name.c_str(), &w, &h, &channels_in_file, kChannels);
  if (data == nullptr) throw std::runtime_error(name + ": " + stbi_failure_reason());
  Image img{w, h, std::vector<unsigned char>(data, data + std::size_t(w) * h * kChannels)};
  stbi_image_free(data);
  return img;
}

// The JPEG bytes of an image (quality 90); img.save() is this plus write_file.
std::vector<unsigned char> encode_jpeg(const Image& img) {
  std::vector<unsigned char> bytes;
  auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(context);
    out->insert(out->end(), static_cast<unsigned char*>(data),
                static_cast<unsigned char*>(data) + size);
  };
  if (!stbi_write_jpg_to_func(append, &bytes, img.width, img.height, kChannels, img.pixels.data(),
                              90))
    throw std::runtime_error("JPEG encoding failed");
  return bytes;
}

// A Gaussian blur of standard deviation `sigma`, made the way Pillow's GaussianBlur makes it:
// three box blurs in a row, which come very close to a Gaussian. A box blur is a running sum
// (add the sample entering the window, subtract the one leaving it), so the cost per pixel
// does not grow with the radius. Rows first, then columns; edges are clamped.
Image gaussian_blur(const Image& img, double sigma) {
  constexpr int kPasses = 3;
  // kPasses boxes of width 2r + 1 have variance kPasses * ((2r + 1)^2 - 1) / 12 = sigma^2.
  const int r = std::max(
      1, static_cast<int>(std::lround((std::sqrt(12 * sigma * sigma / kPasses + 1) - 1) / 2)));
  const float scale = 1.0f / static_cast<float>(2 * r + 1);
  const int w = img.width, h = img.height, c = kChannels, row = w * c;
  std::vector<float> a(img.pixels.begin(), img.pixels.end()), b(a.size());

  // Along each row, channel by channel.
  for (int pass = 0; pass < kPasses; ++pass) {
    for (int y = 0; y < h; ++y) {
      for (int ch = 0; ch < c; ++ch) {
        const float* in = &a[std::size_t(y) * row + ch];
        float* out = &b[std::size_t(y) * row + ch];
        auto at = [&](int x) { return in[std::size_t(std::clamp(x, 0, w - 1)) * c]; };
        float sum = 0;
        for (int x = -r; x <= r; ++x) sum += at(x);
        for (int x = 0; x < w; ++x) {
          out[std::size_t(x) * c] = sum * scale;
          sum += at(x + r + 1) - at(x - r);
        }
      }
    }
    std::swap(a, b);
  }
  // Down the columns, a whole row at a time (contiguous loops the compiler vectorises).
  std::vector<float> sum(row);
  for (int pass = 0; pass < kPasses; ++pass) {
    auto line = [&](int y) { return &a[std::size_t(std::clamp(y, 0, h - 1)) * row]; };
    std::fill(sum.begin(), sum.end(), 0.0f);
    for (int y = -r; y <= r; ++y) {
      const float* in = line(y);
      for (int i = 0; i < row; ++i) sum[i] += in[i];
    }
    for (int y = 0; y < h; ++y) {
      float* out = &b[std::size_t(y) * row];
      const float* entering = line(y + r + 1);
      const float* leaving = line(y - r);
      for (int i = 0; i < row; ++i) {
        out[i] = sum[i] * scale;
        sum[i] += entering[i] - leaving[i];
      }
    }
    std::swap(a, b);
  }

  Image result{w, h, std::vector<unsigned char>(a.size())};
  for (std::size_t i = 0; i < a.size(); ++i)
    result.pixels[i] = static_cast<unsigned char>(std::clamp(a[i] + 0.5f, 0.0f, 255.0f));
  return result;
}

// The tutorial's download_image(image_url): here the "URL" is the file to create, and the
// photo is drawn instead of fetched. Returns the file name, as the tutorial does.
std::string download_image(const std::string& image_name) {
  const auto seed = std::hash<std::string>{}(fs::path(image_name).filename().string());
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::normal_distribution<double> grain(0.0, 12.0);
  const double sun_x = kWidth * (0.2 + 0.6 * u(rng)), sun_y = kHeight * (0.15 + 0.2 * u(rng));
  const double hill_phase = 6.28 * u(rng), hue = u(rng);
  Image img{kWidth, kHeight, std::vector<unsigned char>(std::size_t(kWidth) * kHeight * kChannels)};
  for (int y = 0; y < kHeight; ++y) {
    for (int x = 0; x < kWidth; ++x) {
      const double t = double(y) / kHeight;
      double rgb[3] = {90 + 120 * t * hue, 140 + 60 * t, 235 - 80 * t};  // sky
      if (std::hypot(x - sun_x, y - sun_y) < 45) rgb[0] = 255, rgb[1] = 220, rgb[2] = 90;
      const double hill = kHeight * (0.65 + 0.08 * std::sin(x / 70.0 + hill_phase));
      if (y > hill) {  // green hills with dark furrows every 24 pixels
        const bool furrow = (x + 2 * y) / 12 % 2 == 0;
        rgb[0] = furrow ? 40 : 70, rgb[1] = furrow ? 100 : 160, rgb[2] = 50;
      }
      for (int ch = 0; ch < kChannels; ++ch)
        img.pixels[(std::size_t(y) * kWidth + x) * kChannels + ch] =
            static_cast<unsigned char>(std::clamp(rgb[ch] + grain(rng), 0.0, 255.0));
    }
  }
  write_file(image_name, encode_jpeg(img));
  std::printf("%s downloaded successfully.\n", fs::path(image_name).filename().c_str());
  std::fflush(stdout);
  return image_name;
}

std::string processed_name(const std::string& image_name) {
  const fs::path p(image_name);
  return (p.parent_path() / ("processed_" + p.filename().string())).string();
}

// The tutorial's process_image(image_name): open, blur, save as processed_<name>.
std::string process_image(const std::string& image_name) {
  const Image img = load_image(image_name);
  write_file(processed_name(image_name), encode_jpeg(gaussian_blur(img, kRadius)));
  std::printf("%s processed.\n", fs::path(image_name).filename().c_str());
  std::fflush(stdout);
  return processed_name(image_name);
}

// Mean absolute difference between horizontally adjacent samples: lower means smoother.
double roughness(const Image& img) {
  double sum = 0;
  for (std::size_t i = kChannels; i < img.pixels.size(); ++i)
    sum += std::abs(int(img.pixels[i]) - int(img.pixels[i - kChannels]));
  return sum / double(img.pixels.size());
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int run() {
  const TempDir dir;  // removed when run() returns or throws
  std::vector<std::string> image_urls;
  for (int i = 1; i <= kPhotos; ++i)
    image_urls.push_back((dir.path() / ("photo-" + std::to_string(i) + ".jpg")).string());

  mproc::ProcessPoolExecutor executor;  // cpu_count() workers
  std::printf("%zu workers\n", executor.max_workers());

  // "Download": executor.map(download_image, image_urls), the file names in input order.
  auto start = std::chrono::steady_clock::now();
  std::vector<std::string> image_names;
  for (const std::string& name : executor.map(download_image, image_urls))
    image_names.push_back(name);
  std::printf("made %zu photos of %dx%d in %.2f s\n\n", image_names.size(), kWidth, kHeight,
              seconds_since(start));

  // The serial loop, for comparison; keep its output bytes.
  start = std::chrono::steady_clock::now();
  std::vector<std::vector<unsigned char>> serial;
  for (const std::string& name : image_names) serial.push_back(read_file(process_image(name)));
  const double serial_s = seconds_since(start);
  std::printf("serial loop: blurred %zu photos in %.2f s\n\n", image_names.size(), serial_s);

  // The tutorial's second map: executor.map(process_image, image_names).
  start = std::chrono::steady_clock::now();
  std::vector<std::string> processed;
  try {
    for (const std::string& out : executor.map(process_image, image_names))
      processed.push_back(out);
  } catch (const std::exception& e) {
    std::printf("Error processing an image: %s\n", e.what());
    return 1;
  }
  const double parallel_s = seconds_since(start);
  std::printf("ProcessPoolExecutor.map: blurred %zu photos in %.2f s (%.1fx the serial loop)\n\n",
              processed.size(), parallel_s, serial_s / parallel_s);

  // The same blur with the one-shot map: decoded images in memory, a capturing lambda.
  std::vector<Image> photos;
  for (const std::string& name : image_names) photos.push_back(load_image(name));
  const double radius = kRadius;
  start = std::chrono::steady_clock::now();
  const std::vector<Image> blurred =
      mproc::map([&](const Image& photo) { return gaussian_blur(photo, radius); }, photos);
  std::printf(
      "mproc::map on decoded images: blurred %zu in %.2f s (the blur only: no files, no "
      "JPEG decoding or encoding)\n\n",
      blurred.size(), seconds_since(start));

  // An error in a worker comes back to the parent: a file that is not an image.
  const std::string bogus = (dir.path() / "not-a-photo.jpg").string();
  write_file(bogus, {'n', 'o', 't', ' ', 'a', ' ', 'J', 'P', 'E', 'G'});
  bool error_reported = false;
  try {
    for (const std::string& out : executor.map(process_image, std::vector<std::string>{bogus}))
      std::printf("unexpected: %s\n", out.c_str());
  } catch (const std::runtime_error& e) {
    error_reported = true;
    std::printf("Error processing not-a-photo.jpg: %s\n", e.what());
  }

  // Check every output.
  bool ok = error_reported && processed.size() == image_names.size();
  for (std::size_t i = 0; ok && i < processed.size(); ++i) {
    const Image in = load_image(image_names[i]);
    const Image out = load_image(processed[i]);
    long long diff = 0;
    for (std::size_t j = 0; j < in.pixels.size(); ++j)
      diff += std::abs(int(in.pixels[j]) - int(out.pixels[j]));
    const double mean_diff = double(diff) / double(in.pixels.size());
    const bool same_bytes =
        read_file(processed[i]) == serial[i] && encode_jpeg(blurred[i]) == serial[i];
    std::printf("%s: %dx%d, mean change %.1f per channel, roughness %.2f -> %.2f, %s\n",
                fs::path(processed[i]).filename().c_str(), out.width, out.height, mean_diff,
                roughness(in), roughness(out),
                same_bytes ? "same bytes in all three runs" : "RUNS DIFFER");
    ok = out.width == in.width && out.height == in.height && mean_diff > 1.0 &&
         roughness(out) < roughness(in) / 2 && same_bytes;
  }
  std::printf("%s\n", ok ? "all outputs decode, are blurred and agree" : "WRONG RESULT");
  return ok ? 0 : 1;
}

int main() {
  // Line-buffered even into a pipe: the parent's lines and the workers' appear in time order.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  // Catch here so that the stack unwinds and TempDir removes the directory: an exception
  // leaving main would call std::terminate without unwinding.
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "image_blur: %s\n", e.what());
    return 1;
  }
}
