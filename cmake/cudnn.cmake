# cuDNN for conv2d on CUDA (included by the root CMakeLists.txt once the CUDA backend is on).
# Sets PEFT_WITH_CUDNN and, when found, the imported target peft_cudnn (also re-created by
# peftConfig.cmake for consumers of an installed build).
#
# Where it looks, first match wins: CUDNN_ROOT (cache variable or environment), the CUDA
# toolkit's own include / lib folders, then the `nvidia/cudnn/{include,lib}` folder of a pip
# `nvidia-cudnn-cu*` wheel in any Python site-packages we can find. The library is searched
# beside the header found, so a header of one install is never paired with another's library.
# Pip wheels ship only the versioned libcudnn.so.9 (no unversioned symlink), hence both names.
# Linking libcudnn (the cuDNN 9 shim) is enough: it loads its sub-libraries (cnn, ops, graph,
# engines) from its own folder at run time (RUNPATH $ORIGIN).
set(PEFT_WITH_CUDNN OFF)
# A new CUDNN_ROOT must search again rather than keep the cached result of the last one.
if(NOT "${CUDNN_ROOT}|$ENV{CUDNN_ROOT}" STREQUAL "${_PEFT_CUDNN_LAST_ROOT}")
  unset(PEFT_CUDNN_INCLUDE_DIR CACHE)
  unset(PEFT_CUDNN_LIBRARY CACHE)
  set(_PEFT_CUDNN_LAST_ROOT "${CUDNN_ROOT}|$ENV{CUDNN_ROOT}" CACHE INTERNAL "")
endif()
if(NOT PEFT_CUDNN STREQUAL "OFF")
  set(_peft_cudnn_roots)
  foreach(r "${CUDNN_ROOT}" "$ENV{CUDNN_ROOT}")
    if(r)
      list(APPEND _peft_cudnn_roots "${r}")
    endif()
  endforeach()
  if(CUDAToolkit_INCLUDE_DIRS)
    foreach(inc ${CUDAToolkit_INCLUDE_DIRS})
      get_filename_component(r "${inc}" DIRECTORY)
      list(APPEND _peft_cudnn_roots "${r}")
    endforeach()
  endif()
  list(APPEND _peft_cudnn_roots /usr/local/cuda /usr)
  # Python site-packages (pip wheels): ask every interpreter on PATH, then glob the usual places.
  set(_peft_site_dirs)
  foreach(py python3 python)
    find_program(_peft_py_${py} ${py})
    if(_peft_py_${py})
      execute_process(COMMAND ${_peft_py_${py}} -c
        "import site, sys; print(';'.join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))"
        OUTPUT_VARIABLE _out OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
      if(_rc EQUAL 0)
        list(APPEND _peft_site_dirs ${_out})
      endif()
    endif()
  endforeach()
  file(GLOB _globbed LIST_DIRECTORIES true
    /usr/local/lib/python3*/site-packages /usr/local/lib/python3*/dist-packages
    /usr/lib/python3*/site-packages /usr/lib/python3/dist-packages
    $ENV{HOME}/.local/lib/python3*/site-packages $ENV{VIRTUAL_ENV}/lib/python3*/site-packages
    $ENV{CONDA_PREFIX}/lib/python3*/site-packages)
  list(APPEND _peft_site_dirs ${_globbed})
  foreach(d ${_peft_site_dirs})
    if(IS_DIRECTORY "${d}/nvidia/cudnn/include")
      list(APPEND _peft_cudnn_roots "${d}/nvidia/cudnn")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES _peft_cudnn_roots)

  find_path(PEFT_CUDNN_INCLUDE_DIR cudnn.h PATHS ${_peft_cudnn_roots} PATH_SUFFIXES include NO_DEFAULT_PATH)
  if(PEFT_CUDNN_INCLUDE_DIR)
    get_filename_component(_root "${PEFT_CUDNN_INCLUDE_DIR}" DIRECTORY)
    find_library(PEFT_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9 libcudnn.so.8 PATHS "${_root}"
                 PATH_SUFFIXES lib64 lib lib/x64 lib/x86_64-linux-gnu NO_DEFAULT_PATH)
    # Debian-style layouts keep headers in /usr/include and libraries in a multiarch folder.
    if(NOT PEFT_CUDNN_LIBRARY)
      find_library(PEFT_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9 libcudnn.so.8)
    endif()
  endif()
  set(_peft_cudnn_version "")
  if(PEFT_CUDNN_INCLUDE_DIR AND EXISTS "${PEFT_CUDNN_INCLUDE_DIR}/cudnn_version.h")
    file(STRINGS "${PEFT_CUDNN_INCLUDE_DIR}/cudnn_version.h" _defs REGEX "define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ")
    foreach(part MAJOR MINOR PATCHLEVEL)
      string(REGEX MATCH "CUDNN_${part} +([0-9]+)" _m "${_defs}")
      set(_peft_cudnn_${part} "${CMAKE_MATCH_1}")
    endforeach()
    set(_peft_cudnn_version "${_peft_cudnn_MAJOR}.${_peft_cudnn_MINOR}.${_peft_cudnn_PATCHLEVEL}")
  endif()
  # The legacy convolution API with groups, dilation and cudnnGet*_v7 needs cuDNN 8 or 9.
  if(PEFT_CUDNN_INCLUDE_DIR AND PEFT_CUDNN_LIBRARY AND _peft_cudnn_version VERSION_GREATER_EQUAL 8)
    set(PEFT_WITH_CUDNN ON)
    add_library(peft_cudnn SHARED IMPORTED)
    set_target_properties(peft_cudnn PROPERTIES IMPORTED_LOCATION "${PEFT_CUDNN_LIBRARY}"
                          INTERFACE_INCLUDE_DIRECTORIES "${PEFT_CUDNN_INCLUDE_DIR}")
    message(STATUS "peft: cuDNN ${_peft_cudnn_version}: ${PEFT_CUDNN_LIBRARY}")
  elseif(PEFT_CUDNN STREQUAL "ON")
    message(FATAL_ERROR "PEFT_CUDNN=ON but cuDNN >= 8 was not found (header: ${PEFT_CUDNN_INCLUDE_DIR}, "
                        "library: ${PEFT_CUDNN_LIBRARY}, version: '${_peft_cudnn_version}'); pass -DCUDNN_ROOT=<dir "
                        "holding include/cudnn.h and lib/libcudnn.so*>, e.g. <site-packages>/nvidia/cudnn")
  endif()
endif()
message(STATUS "peft: cuDNN for conv2d ${PEFT_WITH_CUDNN}")
